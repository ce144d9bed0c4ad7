/*
 * api.h: the public API (/v1/payments...), the stand-in payment pages
 * (/secure/...) and injected API faults; also the request router that
 * hands /_sim/ to the control surface. Event-loop thread only.
 */
#ifndef PAYHOOK_SIM_API_H
#define PAYHOOK_SIM_API_H

#include "sim/json.h"
#include "sim/sim.h"

struct evhttp_request;

struct api	*api_new(struct sim *);
/* Answer every request still held by a "timeout" fault, then free. */
void		 api_free(struct api *);
/* evhttp generic callback; arg is the struct sim. */
void		 api_route_cb(struct evhttp_request *, void *arg);
/* Replace the fault settings from a JSON object; -1 + *cause if bad. */
int		 api_set_faults(struct api *, const cJSON *, const char **cause);
cJSON		*api_faults_json(const struct api *);
void		 api_clear_faults(struct api *);

#endif
