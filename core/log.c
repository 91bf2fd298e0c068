/* Level-filtered logging to stderr, one line per call. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static mr_log_level current_level = MR_LOG_INFO;

void mr_log_set_verbosity(bool quiet, bool verbose) {
    current_level = quiet ? MR_LOG_WARN : verbose ? MR_LOG_DEBUG : MR_LOG_INFO;
}

void mr_log_set_level(mr_log_level level) {
    current_level = level;
}

mr_log_level mr_log_get_level(void) {
    return current_level;
}

void mr_log(mr_log_level level, const char *fmt, ...) {
    static const char *prefix[] = {"error: ", "warning: ", "", "debug: "};
    if (level > current_level) return;
    va_list ap;
    va_start(ap, fmt);
    fputs(prefix[level], stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
