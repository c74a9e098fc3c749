/*
 * log.h — the node's log: one line per event on stderr, with a UTC timestamp
 * and a level. Never pass sample values or a foreign vehicle's VIN to it
 * (promises 1 and 3 of DESIGN.md): log what happened, not what was sent.
 */
#ifndef DM_LOG_H
#define DM_LOG_H

enum dm_log_level { DM_LOG_DEBUG, DM_LOG_INFO, DM_LOG_WARN, DM_LOG_ERROR };

void dm_log_set_level(enum dm_log_level level);
void dm_log(enum dm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define dm_debug(...) dm_log(DM_LOG_DEBUG, __VA_ARGS__)
#define dm_info(...) dm_log(DM_LOG_INFO, __VA_ARGS__)
#define dm_warn(...) dm_log(DM_LOG_WARN, __VA_ARGS__)
#define dm_error(...) dm_log(DM_LOG_ERROR, __VA_ARGS__)

#endif
