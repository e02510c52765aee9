/* The agent's two modes (lx_main.c, lx_zygote.c). */
#ifndef LX_ZYGOTE_H
#define LX_ZYGOTE_H

#include <signal.h>

/* One agent on control channel ctl: the exchange of lx_proto.h.  Ends the
 * process when the channel closes (never returns then). */
int lx_agent_main(int ctl);

/* The zygote on channel ctl: forks an lx_agent_main per FORK request until
 * the channel closes; returns the exit status. */
int lx_zygote(int ctl);

/* What both modes do with their signals and their channel: ignore SIGPIPE,
 * SIGINT, SIGHUP and SIGQUIT, block `mask` and return a signalfd for it (-1
 * on error); then serve until on_frame returns -1 or poll fails. */
int lx_serve_signals(const sigset_t *mask);
void lx_serve(int ctl, int sfd, void (*on_signals)(int sfd), int (*on_frame)(int ctl));

#endif
