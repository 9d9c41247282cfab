/* lineread.h — the luaio command's line reader (lineread.c), for main.c. */
#ifndef LUAIO_LINEREAD_H
#define LUAIO_LINEREAD_H
#include <lua.h>

/* Add read_line, add_history, history_file, line_editing to the host's
** core table (package.loaded["luaio.core"]). */
void luaio_lineread_open(lua_State *L);
/* Free readline's history and the reader's buffers (at exit). */
void luaio_lineread_close(void);

#endif
