#include "util/crc32c.h"

#include <pthread.h>
#include <string.h>

/* Two implementations of one function: the SSE 4.2 crc32 instruction where
 * the processor has it (x86-64 since 2008; several times faster, and the
 * log checksums every payload it writes), and slicing by 8 elsewhere. A
 * test checks both against the published check values. */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int use_hardware;

static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t crc = n;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
		crc_table[0][n] = crc;
	}
	/* Table k advances a byte through k further zero bytes. */
	for (uint32_t n = 0; n < 256; n++)
		for (int t = 1; t < 8; t++)
			crc_table[t][n] =
			    (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xff];
#if defined(__x86_64__)
	use_hardware = __builtin_cpu_supports("sse4.2");
#endif
}

/* The raw (not inverted) CRC by tables. */
static uint32_t crc_by_tables(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		/* Byte-wise loads keep this independent of alignment and endianness. */
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                     (uint32_t)p[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
		      crc_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
/* The raw CRC by the crc32 instruction (little-endian x86: memcpy loads). */
__attribute__((target("sse4.2"))) static uint32_t crc_by_instruction(uint32_t crc,
								     const uint8_t *p, size_t len)
{
	uint64_t wide = crc;
	while (len >= 8) {
		uint64_t word;
		memcpy(&word, p, 8);
		wide = __builtin_ia32_crc32di(wide, word);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)wide;
	while (len--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
	if (use_hardware)
		return ~crc_by_instruction(~crc, data, len);
#endif
	return ~crc_by_tables(~crc, data, len);
}

uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_by_tables(~crc, data, len);
}
