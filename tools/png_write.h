/* PNG encoding for the report's inline images (png_write.c): zlib only, no libpng. */
#ifndef TS_PNG_WRITE_H
#define TS_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* An 8-bit grayscale (channels 1) or RGB (channels 3) PNG of pixels (h, w, channels),
 * rows top first, in *out (malloc'ed, *len bytes). 0 on success, -1 when out of memory. */
int png_encode(const uint8_t *pixels, int w, int h, int channels, uint8_t **out, size_t *len);
/* Writes "data:image/png;base64,..." for pixels as png_encode takes them; -1 when out of
 * memory (nothing written). */
int png_write_data_uri(FILE *f, const uint8_t *pixels, int w, int h, int channels);

#endif
