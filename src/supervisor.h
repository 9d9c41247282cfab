/* supervisor.h — `luaio --workers` (supervisor.c), for main.c. */
#ifndef LUAIO_SUPERVISOR_H
#define LUAIO_SUPERVISOR_H

/* Are --workers or --grace among the options (before the script)? */
int luaio_supervisor_wanted(int argc, char **argv);
/* Run the supervisor; returns the command's exit status. */
int luaio_supervise(int argc, char **argv);

#endif
