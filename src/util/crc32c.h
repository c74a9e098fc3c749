/*
 * crc32c.h — CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every record and block the store writes. Thread-safe; the
 * tables are built once on first use.
 */
#ifndef DM_CRC32C_H
#define DM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of `len` bytes continuing from `crc` (0 to start), so a checksum
 * can be taken in pieces: crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The same by tables only, whatever the processor: for tests that check the
 * two implementations agree. */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
