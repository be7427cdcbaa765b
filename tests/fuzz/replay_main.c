/* main() for the fuzz targets when built as plain programs (ctest): replay
 * every file given, or every file in the directories given, through
 * LLVMFuzzerTestOneInput. Under libFuzzer this file is not linked. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fedvigil/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (32u << 20)

static int replay_file(const char *path)
{
	void *buf;
	size_t len;
	int r = fv_file_read(path, FUZZ_MAX_INPUT, &buf, &len);

	if (r < 0) {
		fprintf(stderr, "%s: %s\n", path, fv_strerror(r));
		return 1;
	}
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

static int replay(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char sub[4096];
	int fails = 0, n = 0;

	if (!d)
		return replay_file(path);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		fails += replay(sub);
		n++;
	}
	closedir(d);
	printf("%s: %d inputs\n", path, n);
	return fails;
}

int main(int argc, char **argv)
{
	int fails = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		fails += replay(argv[i]);
	return fails ? 1 : 0;
}
