/* SPDX-License-Identifier: MIT */
/* The libFuzzer entry point every fuzz-*.c target defines. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
