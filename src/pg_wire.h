/* pg_wire.h — PostgreSQL protocol 3.0 backend messages read where they lie
** in a stream's read buffer (pg_wire.c), DataRows decoded into Lua rows
** without a Lua call per row or per field. No libuv here: stream_read.c
** drives the reader (stream:_read_pg), fuzz/pg_wire.c fuzzes it. */
#ifndef LUAIO_PG_WIRE_H
#define LUAIO_PG_WIRE_H

#include "readbuf.h"

#define LUAIO_PG_MAX_MESSAGE (1024u * 1024u * 1024u)   /* the server's own limit: 1 GiB */
#define LUAIO_PG_MAX_COLUMNS 1664                      /* MaxTupleAttributeNumber */

/* How a column's text is turned into a Lua value (the Lua half maps type
** OIDs to these, lua/luaio/pg/types.lua). JSON is left a string here. */
enum { PG_TEXT, PG_INT, PG_FLOAT, PG_BOOL, PG_BYTEA,
       PG_INT_BIN, PG_FLOAT8_BIN, PG_BOOL_BIN,   /* the binary format: the server formats nothing */
       PG_KINDS };

/* One message from the front of b. With a rows table at stack index
** `rows` (0: none), names at rows + 1 (array of column names) and kinds at
** rows + 2 (array of PG_* codes), every DataRow ('D') first is decoded into
** a row table (name -> value, NULL left out) appended to rows and consumed.
** Then: pushes the next message's type (a one-character string) and body
** and consumes it (2), or nil at a clean EOF (1); raises ProtocolError for a
** bad length or a DataRow that does not match the columns, ConnectionError
** for an EOF inside a message; else RB_WAIT (*need = the whole message's
** size once its header is in, else 0) or RB_FAIL (b->err is to be raised). */
int luaio_pg_read(lua_State *L, luaio_readbuf *b, int rows, size_t *need);

/* bytea's text output (hex "\x..." or the old escape format) decoded into
** out (room for n bytes): the decoded size, or -1 when it is malformed */
long luaio_pg_bytea(const char *p, size_t n, char *out);

#endif
