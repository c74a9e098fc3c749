/*
 * node.h — `domicile node -c FILE`: one site's server. Reads the config,
 * opens the store, and serves vehicles over MQTT and people over HTTP until
 * SIGTERM or SIGINT, then shuts down cleanly (batches in flight are either
 * acknowledged and stored, or not acknowledged).
 */
#ifndef DM_NODE_H
#define DM_NODE_H

/* argv[0] is "node". Returns the process exit status. */
int node_main(int argc, char **argv);

#endif
