# WebSocket echo server with the websockets package: PORT [--uvloop]
import asyncio, sys
import websockets

async def echo(ws, path=None):        # websockets < 10.1 passes the path too
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass

async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, backlog=1024, compression=None):
        await asyncio.Future()

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main(int(sys.argv[1])))
