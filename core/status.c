/* Status names, the thread-local last-error buffer and the caller-bug abort. */
#include "status.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char last_error[2048];

const char *mr_status_name(mr_status s) {
    switch (s) {
    case MR_OK:
        return "ok";
    case MR_ERR_ARG:
        return "bad argument";
    case MR_ERR_IO:
        return "i/o error";
    case MR_ERR_FORMAT:
        return "bad format";
    case MR_ERR_CONFIG:
        return "bad config";
    case MR_ERR_NOMEM:
        return "out of memory";
    case MR_ERR_NUMERIC:
        return "numeric error";
    case MR_ERR_INTERRUPTED:
        return "interrupted";
    }
    return "unknown status";
}

mr_status mr_fail(mr_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *mr_last_error(void) {
    return last_error;
}

void mr_clear_error(void) {
    last_error[0] = '\0';
}

void mr_panic_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "mrcnn: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
