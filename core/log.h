/* Logging to stderr with levels; tools choose the level, the library only reports. */
#ifndef MR_LOG_H
#define MR_LOG_H

#include <stdbool.h>

typedef enum { MR_LOG_ERROR = 0, MR_LOG_WARN, MR_LOG_INFO, MR_LOG_DEBUG } mr_log_level;

/* What the CLI's --quiet and --verbose flags mean, in one place: quiet shows warnings and errors
 * only, verbose adds debug lines, neither (or both: quiet wins) keeps the default, info. */
void mr_log_set_verbosity(bool quiet, bool verbose);
mr_log_level mr_log_get_level(void);
/* Only messages at `level` or more severe from now on (data-parallel processes other than the
 * writer keep errors alone). */
void mr_log_set_level(mr_log_level level);
void mr_log(mr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mr_error(...) mr_log(MR_LOG_ERROR, __VA_ARGS__)
#define mr_warn(...)  mr_log(MR_LOG_WARN, __VA_ARGS__)
#define mr_info(...)  mr_log(MR_LOG_INFO, __VA_ARGS__)
#define mr_debug(...) mr_log(MR_LOG_DEBUG, __VA_ARGS__)

#endif
