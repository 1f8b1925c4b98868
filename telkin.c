/* telkin - placeholder until the extension lands. */
#include <stdio.h>
#include <bearssl.h>
#include "json_min.h"
#include "sigv4.h"

int main(void)
{
	br_sha256_context c;
	br_sha256_init(&c);
	puts("telkin");
	return 0;
}
