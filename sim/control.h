/*
 * control.h: the simulator-only control surface under /_sim/ (JSON in,
 * JSON out): play the paying user, move the clock, inject faults, read
 * the webhook log, rotate the signing key, send lies. Event-loop thread.
 */
#ifndef PAYHOOK_SIM_CONTROL_H
#define PAYHOOK_SIM_CONTROL_H

#include "sim/sim.h"

struct evhttp_request;

/* Serve one /_sim/ request; parts are the path segments ("_sim", ...). */
void	control_handle(struct sim *, struct evhttp_request *, char **parts,
	    int n);

#endif
