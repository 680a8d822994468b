#include <stdio.h>
#include "count.h"

int main(int argc, char **argv)
{
	struct counts total = {0, 0, 0};
	if (argc < 2) {
		count_stream(stdin, &total);
	} else {
		for (int i = 1; i < argc; i++) {
			FILE *f = fopen(argv[i], "r");
			if (!f) {
				perror(argv[i]);
				return 1;
			}
			count_stream(f, &total);
			fclose(f);
		}
	}
	printf("%lu %lu %lu\n", total.lines, total.words, total.bytes);
	return 0;
}
