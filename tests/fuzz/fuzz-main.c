/* SPDX-License-Identifier: MIT */
/* Replays files (or every file in directories) through a libFuzzer-style target, so the corpus
 * runs as a regression test in builds without libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        long n;

        if (!f)
                return -1;
        (void) fseek(f, 0, SEEK_END);
        n = ftell(f);
        (void) fseek(f, 0, SEEK_SET);
        buf = malloc(n > 0 ? (size_t) n : 1);
        if (!buf || (n > 0 && fread(buf, 1, (size_t) n, f) != (size_t) n)) {
                fclose(f);
                free(buf);
                return -1;
        }
        fclose(f);
        (void) LLVMFuzzerTestOneInput(buf, (size_t) n);
        free(buf);
        return 0;
}

int main(int argc, char **argv) {
        unsigned ran = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: not found\n", argv[i]);
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        ran += run_file(argv[i]) == 0;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                for (struct dirent *de; d && (de = readdir(d));) {
                        char p[4096];
                        if (de->d_name[0] == '.')
                                continue;
                        (void) snprintf(p, sizeof(p), "%s/%s", argv[i], de->d_name);
                        ran += run_file(p) == 0;
                }
                if (d)
                        closedir(d);
        }
        printf("%u inputs replayed\n", ran);
        return ran > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
