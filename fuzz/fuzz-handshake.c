/* SPDX-License-Identifier: MIT */
/* libFuzzer: arbitrary bytes from a client from the very first byte (handshake). */
#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_setup();
	fuzz_serve(NULL, 0, data, size);
	return 0;
}
