# echo server with asyncio streams: PORT [--uvloop]
import asyncio, sys

async def handle(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()

async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(int(sys.argv[1])))
