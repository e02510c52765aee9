#include "lx_fail.h"

#include <stdarg.h>
#include <stdio.h>

int lx_fail(struct lx_err *e, int step, int err, const char *fmt, ...)
{
	va_list ap;
	e->step = step;
	e->err = err;
	va_start(ap, fmt);
	vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
	va_end(ap);
	return -1;
}
