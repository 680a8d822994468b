#ifndef COUNT_H
#define COUNT_H
#include <stdio.h>

struct counts {
	unsigned long lines, words, bytes;
};

void count_stream(FILE *in, struct counts *c);
#endif
