/*
 * clock.h — wall-clock milliseconds (sample timestamps, records) and a
 * monotonic nanosecond clock (latencies, timeouts).
 */
#ifndef DM_CLOCK_H
#define DM_CLOCK_H

#include <stdint.h>

int64_t dm_now_ms(void);
uint64_t dm_mono_ns(void);

#endif
