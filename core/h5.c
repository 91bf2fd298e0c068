/* HDF5 helpers over the C API. HDF5's own error stack printing is switched off; every failure
 * becomes one line naming the file and the object. */
#include "h5.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "text.h"
#include "util.h"

static void quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

mr_status mr_h5_check_regular(const char *path, const char *what, int64_t *size) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return mr_fail(MR_ERR_IO, "%s: cannot open: %s", path,
                       errno == ENOENT ? "no such file" : strerror(errno));
    if (S_ISDIR(sb.st_mode)) return mr_fail(MR_ERR_ARG, "%s: a folder, not a %s", path, what);
    /* Opening a FIFO blocks until a writer comes, which may be never; a device has no size. */
    if (!S_ISREG(sb.st_mode))
        return mr_fail(MR_ERR_ARG, "%s: not a regular file (%s), not a %s", path,
                       S_ISFIFO(sb.st_mode)   ? "a FIFO"
                       : S_ISSOCK(sb.st_mode) ? "a socket"
                       : S_ISCHR(sb.st_mode)  ? "a character device"
                       : S_ISBLK(sb.st_mode)  ? "a block device"
                                              : "not a plain file",
                       what);
    if (size) *size = (int64_t)sb.st_size;
    return MR_OK;
}

mr_status mr_h5_open(const char *path, bool writable, mr_h5 *out) {
    quiet();
    memset(out, 0, sizeof *out);
    int64_t size = 0;
    MR_TRY(mr_h5_check_regular(path, "HDF5 file", &size));
    FILE *probe = fopen(path, "rb");
    if (!probe) return mr_fail(MR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: not an HDF5 file (%lld bytes); was the download cut "
                       "short?",
                       path, (long long)size);
    hid_t id = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0)
        return mr_fail(MR_ERR_FORMAT, "%s: HDF5 file is damaged or truncated (%lld bytes)", path,
                       (long long)size);
    out->id = id;
    out->path = mr_strdup(path);
    out->writable = writable;
    return MR_OK;
}

mr_status mr_h5_create(const char *path, mr_h5 *out) {
    quiet();
    memset(out, 0, sizeof *out);
    hid_t id = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) return mr_fail(MR_ERR_IO, "%s: cannot create HDF5 file", path);
    out->id = id;
    out->path = mr_strdup(path);
    out->writable = true;
    return MR_OK;
}

mr_status mr_h5_close(mr_h5 *f) {
    mr_status st = MR_OK;
    if (f->id > 0) {
        errno = 0;
        if (f->writable && H5Fflush(f->id, H5F_SCOPE_GLOBAL) < 0)
            st = mr_fail(MR_ERR_IO, "%s: cannot flush HDF5 file (%s)", f->path,
                         errno ? strerror(errno) : "HDF5 write error");
        if (H5Fclose(f->id) < 0 && st == MR_OK)
            st = mr_fail(MR_ERR_IO, "%s: cannot close HDF5 file (%s)", f->path,
                         errno ? strerror(errno) : "HDF5 write error");
    }
    free(f->path);
    memset(f, 0, sizeof *f);
    return st;
}

mr_status mr_h5_close_after(mr_h5 *f, mr_status st) {
    if (st == MR_OK) return mr_h5_close(f);
    char keep[2048];
    mr_format(keep, sizeof keep, "%s", mr_last_error());
    mr_h5_close(f);
    return mr_fail(st, "%s", keep);
}

/* Closes a file being written whose contents are no longer wanted (a failed save), even when
 * its disk is full: HDF5's close flushes, and a flush that fails leaves the file in the
 * library's table, where its shutdown at exit crashes. The remaining writes go to memory. */
static void h5_discard(mr_h5 *f) {
    if (f->id > 0 && f->writable) {
        /* The sec2 driver's handle is the file descriptor: point it at an anonymous memory
         * file, so the close's flush has somewhere to go. Writes land sparse and small. */
        int *fd = NULL;
        if (H5Fget_vfd_handle(f->id, H5P_DEFAULT, (void **)&fd) >= 0 && fd && *fd >= 0) {
            int sink = memfd_create("mrcnn-discarded-h5", 0);
            if (sink >= 0) {
                dup2(sink, *fd);
                close(sink);
            }
        }
    }
    /* A file-size limit (ulimit -f) applies to the memory file too: lift it for the close. */
    struct rlimit limit;
    bool lifted = getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != limit.rlim_max;
    if (lifted) setrlimit(RLIMIT_FSIZE, &(struct rlimit){limit.rlim_max, limit.rlim_max});
    H5E_BEGIN_TRY {
        mr_h5_close(f);
    }
    H5E_END_TRY;
    if (lifted) setrlimit(RLIMIT_FSIZE, &limit);
}

/* H5Lexists on every prefix, since it fails on a path whose parent is missing. */
bool mr_h5_exists(mr_h5 *f, const char *path) {
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return false;
    if (!strcmp(path, "/")) return true;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        htri_t ok = H5Lexists((hid_t)f->id, buf, H5P_DEFAULT);
        buf[i] = saved;
        if (ok <= 0) return false;
    }
    return true;
}

/* "(8589934592,2147483648,4)" for messages. */
static void shape_text(char *buf, size_t size, int ndim, const hsize_t *dims) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%llu" : "%llu", (unsigned long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, ")");
}

/* A damaged header can claim any shape: every dimension and the product are checked before any
 * caller multiplies them (the product of (2^33, 2^31, 4) overflows int64), and the values must
 * fit in the file, uncompressed, or in 1024 times it when stored in (possibly compressed)
 * chunks, since no filter HDF5 ships packs better than that. */
static mr_status check_extent(mr_h5 *f, const char *dataset, hid_t ds, int rank,
                              const hsize_t *dims) {
    char text[200];
    uint64_t n = 1;
    bool over = false;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > (hsize_t)MR_H5_MAX_VALUES) over = true;
        if (!over && dims[i] > 0 && n > (uint64_t)MR_H5_MAX_VALUES / dims[i]) over = true;
        if (!over) n *= dims[i];
    }
    if (over) {
        shape_text(text, sizeof text, rank, dims);
        return mr_fail(MR_ERR_FORMAT,
                       "%s: dataset '%s' has shape %s, more than %lld values; the file is damaged",
                       f->path, dataset, text, (long long)MR_H5_MAX_VALUES);
    }
    hsize_t file_size = 0;
    H5Fget_filesize((hid_t)f->id, &file_size);
    hid_t type = H5Dget_type(ds), dcpl = H5Dget_create_plist(ds);
    uint64_t bytes = n * (uint64_t)(type >= 0 ? H5Tget_size(type) : 1);
    bool chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
    if (type >= 0) H5Tclose(type);
    if (dcpl >= 0) H5Pclose(dcpl);
    uint64_t room = chunked ? 1024u * (uint64_t)file_size : (uint64_t)file_size;
    if (bytes > room) {
        shape_text(text, sizeof text, rank, dims);
        return mr_fail(MR_ERR_FORMAT,
                       "%s: dataset '%s' has shape %s, %llu bytes, in a file of %llu bytes; the "
                       "file is damaged or truncated",
                       f->path, dataset, text, (unsigned long long)bytes,
                       (unsigned long long)file_size);
    }
    return MR_OK;
}

mr_status mr_h5_shape(mr_h5 *f, const char *dataset, int *ndim, int64_t *shape) {
    if (!mr_h5_exists(f, dataset))
        return mr_fail(MR_ERR_FORMAT, "%s: no dataset '%s'", f->path, dataset);
    hid_t ds = H5Dopen2((hid_t)f->id, dataset, H5P_DEFAULT);
    if (ds < 0) return mr_fail(MR_ERR_FORMAT, "%s: '%s' is not a dataset", f->path, dataset);
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    mr_status st = MR_OK;
    if (rank < 0 || rank > MR_H5_MAX_DIMS) {
        st = mr_fail(MR_ERR_FORMAT, "%s: dataset '%s' has rank %d", f->path, dataset, rank);
    } else {
        hsize_t dims[MR_H5_MAX_DIMS];
        H5Sget_simple_extent_dims(space, dims, NULL);
        st = check_extent(f, dataset, ds, rank, dims);
        if (st == MR_OK) {
            *ndim = rank;
            for (int i = 0; i < rank; i++) shape[i] = (int64_t)dims[i];
        }
    }
    H5Sclose(space);
    H5Dclose(ds);
    return st;
}

static int64_t count_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static mr_status read_as(mr_h5 *f, const char *dataset, hid_t mem_type, void *out,
                         int64_t capacity) {
    int ndim = 0;
    int64_t shape[MR_H5_MAX_DIMS];
    MR_TRY(mr_h5_shape(f, dataset, &ndim, shape));
    int64_t n = count_of(ndim, shape);
    if (n > capacity)
        return mr_fail(MR_ERR_FORMAT, "%s: dataset '%s' holds %lld values, expected at most %lld",
                       f->path, dataset, (long long)n, (long long)capacity);
    hid_t ds = H5Dopen2((hid_t)f->id, dataset, H5P_DEFAULT);
    herr_t rc = n ? H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : 0;
    H5Dclose(ds);
    if (rc < 0)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: cannot read dataset '%s' (truncated file or non-numeric "
                       "type)",
                       f->path, dataset);
    return MR_OK;
}

mr_status mr_h5_read_into(mr_h5 *f, const char *dataset, float *out, int64_t capacity) {
    return read_as(f, dataset, H5T_NATIVE_FLOAT, out, capacity);
}

mr_status mr_h5_read(mr_h5 *f, const char *dataset, float **data, int *ndim, int64_t *shape) {
    int nd = 0;
    int64_t sh[MR_H5_MAX_DIMS];
    MR_TRY(mr_h5_shape(f, dataset, &nd, sh));
    int64_t n = count_of(nd, sh);
    float *buf = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!buf) return mr_fail(MR_ERR_NOMEM, "%s: no memory for dataset '%s'", f->path, dataset);
    mr_status st = read_as(f, dataset, H5T_NATIVE_FLOAT, buf, n);
    if (st != MR_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    if (ndim) *ndim = nd;
    if (shape)
        for (int i = 0; i < nd; i++) shape[i] = sh[i];
    return MR_OK;
}

mr_status mr_h5_read_i64(mr_h5 *f, const char *dataset, int64_t **data, int64_t *count) {
    int nd = 0;
    int64_t sh[MR_H5_MAX_DIMS];
    MR_TRY(mr_h5_shape(f, dataset, &nd, sh));
    int64_t n = count_of(nd, sh);
    int64_t *buf = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!buf) return mr_fail(MR_ERR_NOMEM, "%s: no memory for dataset '%s'", f->path, dataset);
    mr_status st = read_as(f, dataset, H5T_NATIVE_INT64, buf, n);
    if (st != MR_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *count = n;
    return MR_OK;
}

/* Creates every missing group on the way to `path`'s parent. */
static mr_status make_parents(mr_h5 *f, const char *path) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    mr_status st = MR_OK;
    if (slash && slash != parent) {
        *slash = '\0';
        if (!mr_h5_exists(f, parent)) {
            hid_t g = H5Gcreate2((hid_t)f->id, parent, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0)
                st = mr_fail(MR_ERR_IO, "%s: cannot create group '%s'", f->path, parent);
            else
                H5Gclose(g);
        }
    }
    H5Pclose(lcpl);
    return st;
}

mr_status mr_h5_make_group(mr_h5 *f, const char *group) {
    if (mr_h5_exists(f, group)) return MR_OK;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2((hid_t)f->id, group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g < 0) return mr_fail(MR_ERR_IO, "%s: cannot create group '%s'", f->path, group);
    H5Gclose(g);
    return MR_OK;
}

static mr_status write_as(mr_h5 *f, const char *dataset, hid_t file_type, hid_t mem_type,
                          const void *data, int ndim, const int64_t *shape) {
    MR_TRY(make_parents(f, dataset));
    MR_REQUIRE(ndim >= 1 && ndim <= MR_H5_MAX_DIMS, "dataset '%s' with rank %d", dataset, ndim);
    hsize_t dims[MR_H5_MAX_DIMS] = {0};
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t ds =
        H5Dcreate2((hid_t)f->id, dataset, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = -1;
    errno = 0; /* HDF5's file driver leaves the OS reason of a failed write here */
    if (ds >= 0) {
        rc =
            count_of(ndim, shape) ? H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
        if (H5Dclose(ds) < 0) rc = -1;
    }
    H5Sclose(space);
    if (rc < 0)
        return mr_fail(MR_ERR_IO, "%s: cannot write dataset '%s' (%s)", f->path, dataset,
                       errno ? strerror(errno) : "HDF5 write error");
    return MR_OK;
}

/* IEEE half precision, built the way h5py builds it (HDF5 1.10 has no predefined type). */
static hid_t half_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

/* float32 -> IEEE half, round to nearest even. Done here because HDF5 1.10's own conversion
 * loses the carry when rounding overflows the mantissa (0.99987 became 0.5). */
static uint16_t to_half(float value) {
    uint32_t x;
    memcpy(&x, &value, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) /* Inf, NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (mag < 0x38800000u) {                                   /* half subnormal or zero */
        if (mag < 0x33000000u) return sign;                    /* below half the smallest */
        uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(mag >> 23); /* units of 2^-24 */
        uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((mag >> 13) - ((127u - 15u) << 10)), rest = mag & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry moves the exponent */
    return (uint16_t)(sign | h);
}

mr_status mr_h5_write(mr_h5 *f, const char *dataset, const float *data, int ndim,
                      const int64_t *shape, bool half) {
    if (!half) return write_as(f, dataset, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim, shape);
    int64_t n = ndim >= 1 && ndim <= MR_H5_MAX_DIMS ? count_of(ndim, shape) : 0;
    uint16_t *bits = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    if (!bits) return mr_fail(MR_ERR_NOMEM, "no memory to write '%s' as float16", dataset);
    for (int64_t i = 0; i < n; i++) bits[i] = to_half(data[i]);
    hid_t t = half_type();
    mr_status st = write_as(f, dataset, t, t, bits, ndim, shape);
    H5Tclose(t);
    free(bits);
    return st;
}

mr_status mr_h5_write_i64(mr_h5 *f, const char *dataset, const int64_t *data, int64_t count) {
    return write_as(f, dataset, H5T_STD_I64LE, H5T_NATIVE_INT64, data, 1, &count);
}

/* ---- attributes --------------------------------------------------------------------------- */

static hid_t open_object(mr_h5 *f, const char *object) {
    return H5Oopen((hid_t)f->id, object, H5P_DEFAULT);
}

bool mr_h5_has_attr(mr_h5 *f, const char *object, const char *name) {
    if (!mr_h5_exists(f, object)) return false;
    hid_t o = open_object(f, object);
    if (o < 0) return false;
    htri_t ok = H5Aexists(o, name);
    H5Oclose(o);
    return ok > 0;
}

static mr_status write_attr(mr_h5 *f, const char *object, const char *name, hid_t type, hid_t space,
                            const void *value) {
    hid_t o = open_object(f, object);
    if (o < 0)
        return mr_fail(MR_ERR_IO, "%s: no object '%s' for attribute %s", f->path, object, name);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    if (rc < 0)
        return mr_fail(MR_ERR_IO, "%s: cannot write attribute %s on '%s'", f->path, name, object);
    return MR_OK;
}

mr_status mr_h5_set_attr_str(mr_h5 *f, const char *object, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    mr_status st = write_attr(f, object, name, type, space, &value);
    H5Sclose(space);
    H5Tclose(type);
    return st;
}

mr_status mr_h5_set_attr_i64(mr_h5 *f, const char *object, const char *name, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    mr_status st = write_attr(f, object, name, H5T_NATIVE_INT64, space, &value);
    H5Sclose(space);
    return st;
}

mr_status mr_h5_set_attr_bytes(mr_h5 *f, const char *object, const char *name, const char *value) {
    /* numpy.bytes_ as h5py stores it: scalar, fixed length, NULL padded, ASCII. */
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) ? strlen(value) : 1);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    hid_t space = H5Screate(H5S_SCALAR);
    char *buf = calloc(strlen(value) + 1, 1);
    mr_status st = buf ? MR_OK : mr_fail(MR_ERR_NOMEM, "no memory for attribute %s", name);
    if (buf) {
        memcpy(buf, value, strlen(value));
        st = write_attr(f, object, name, type, space, buf);
    }
    free(buf);
    H5Sclose(space);
    H5Tclose(type);
    return st;
}

mr_status mr_h5_set_attr_f64(mr_h5 *f, const char *object, const char *name, double value) {
    hid_t space = H5Screate(H5S_SCALAR);
    mr_status st = write_attr(f, object, name, H5T_NATIVE_DOUBLE, space, &value);
    H5Sclose(space);
    return st;
}

mr_status mr_h5_set_attr_strings(mr_h5 *f, const char *object, const char *name,
                                 const char *const *values, int count) {
    /* Fixed-length, NULL-padded, as Keras writes layer_names and weight_names. */
    size_t width = 1;
    for (int i = 0; i < count; i++)
        if (strlen(values[i]) > width) width = strlen(values[i]);
    if (count < 0) count = 0;
    char *buf = calloc((size_t)count + 1, width);
    if (!buf) return mr_fail(MR_ERR_NOMEM, "no memory for attribute %s", name);
    for (int i = 0; i < count; i++) memcpy(buf + (size_t)i * width, values[i], strlen(values[i]));
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, width);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    hsize_t dims[1] = {(hsize_t)count};
    hid_t space = count ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_NULL);
    mr_status st = write_attr(f, object, name, type, space, buf);
    H5Sclose(space);
    H5Tclose(type);
    free(buf);
    return st;
}

static mr_status read_string_attr(mr_h5 *f, const char *object, const char *name, char ***values,
                                  int *count) {
    *values = NULL;
    *count = 0;
    hid_t o = open_object(f, object);
    if (o < 0) return mr_fail(MR_ERR_FORMAT, "%s: no object '%s'", f->path, object);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a < 0) {
        H5Oclose(o);
        return mr_fail(MR_ERR_FORMAT, "%s: '%s' has no attribute %s", f->path, object, name);
    }
    hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    mr_status st = MR_OK;
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (H5Sget_simple_extent_type(space) == H5S_NULL) n = 0;
    /* An empty list of any type is an empty list: Keras writes a weightless layer's weight_names
     * as h5py makes `attrs[name] = []`, an empty float64 array. */
    if (n > INT32_MAX) {
        st = mr_fail(MR_ERR_FORMAT, "%s: attribute %s on '%s' holds %lld strings; damaged file",
                     f->path, name, object, (long long)n);
    } else if (n < 0 || (n > 0 && H5Tget_class(type) != H5T_STRING)) {
        st = mr_fail(MR_ERR_FORMAT, "%s: attribute %s on '%s' is not a string", f->path, name,
                     object);
    } else if (n > 0) {
        char **out = calloc((size_t)n, sizeof *out);
        if (!out)
            st = mr_fail(MR_ERR_NOMEM, "no memory for attribute %s", name);
        else if (H5Tis_variable_str(type) > 0) {
            hid_t mem = H5Tcopy(H5T_C_S1);
            H5Tset_size(mem, H5T_VARIABLE);
            H5Tset_cset(mem, H5Tget_cset(type)); /* HDF5 converts no UTF-8 <-> ASCII */
            char **raw = calloc((size_t)n, sizeof *raw);
            if (raw && H5Aread(a, mem, raw) >= 0) {
                for (hssize_t i = 0; i < n; i++) out[i] = mr_strdup(raw[i] ? raw[i] : "");
                H5Dvlen_reclaim(mem, space, H5P_DEFAULT, raw);
            } else {
                st = mr_fail(MR_ERR_FORMAT, "%s: cannot read attribute %s", f->path, name);
            }
            free(raw);
            H5Tclose(mem);
        } else {
            size_t width = H5Tget_size(type);
            char *buf = calloc((size_t)n, width + 1);
            hid_t mem = H5Tcopy(H5T_C_S1);
            H5Tset_size(mem, width);
            H5Tset_strpad(mem, H5T_STR_NULLPAD); /* NULLTERM would cut a full-width name */
            H5Tset_cset(mem, H5Tget_cset(type));
            if (buf && H5Aread(a, mem, buf) >= 0) {
                for (hssize_t i = 0; i < n; i++) {
                    char *s = calloc(width + 1, 1);
                    if (s) memcpy(s, buf + (size_t)i * width, width);
                    out[i] = s;
                }
            } else {
                st = mr_fail(MR_ERR_FORMAT, "%s: cannot read attribute %s", f->path, name);
            }
            free(buf);
            H5Tclose(mem);
        }
        if (st == MR_OK && out) {
            for (hssize_t i = 0; i < n; i++)
                if (!out[i]) st = mr_fail(MR_ERR_NOMEM, "no memory for attribute %s", name);
        }
        if (st == MR_OK) {
            *values = out;
            *count = (int)n;
        } else if (out) {
            mr_h5_free_strings(out, (int)n);
        }
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(a);
    H5Oclose(o);
    return st;
}

mr_status mr_h5_get_attr_strings(mr_h5 *f, const char *object, const char *name, char ***values,
                                 int *count) {
    if (mr_h5_has_attr(f, object, name)) return read_string_attr(f, object, name, values, count);
    /* Keras splits attributes over 64 KB into name0, name1, ... */
    *values = NULL;
    *count = 0;
    size_t cap = 0;
    for (int chunk = 0;; chunk++) {
        char part[256];
        snprintf(part, sizeof part, "%s%d", name, chunk);
        if (!mr_h5_has_attr(f, object, part)) break;
        char **vals = NULL;
        int n = 0;
        MR_TRY(read_string_attr(f, object, part, &vals, &n));
        if (!mr_grow(values, &cap, (size_t)*count + (size_t)n + 1, sizeof **values, 64)) {
            mr_h5_free_strings(vals, n);
            return mr_fail(MR_ERR_NOMEM, "no memory for attribute %s", name);
        }
        memcpy(*values + *count, vals, sizeof *vals * (size_t)n);
        free(vals);
        *count += n;
    }
    if (!*values && !*count)
        return mr_fail(MR_ERR_FORMAT, "%s: '%s' has no attribute %s", f->path, object, name);
    return MR_OK;
}

void mr_h5_free_strings(char **values, int count) {
    for (int i = 0; i < count; i++) free(values[i]);
    free(values);
}

mr_status mr_h5_get_attr_str(mr_h5 *f, const char *object, const char *name, char **value) {
    char **vals = NULL;
    int n = 0;
    MR_TRY(read_string_attr(f, object, name, &vals, &n));
    if (n < 1) {
        mr_h5_free_strings(vals, n);
        return mr_fail(MR_ERR_FORMAT, "%s: attribute %s on '%s' is empty", f->path, name, object);
    }
    *value = vals[0];
    for (int i = 1; i < n; i++) free(vals[i]);
    free(vals);
    return MR_OK;
}

static mr_status read_number_attr(mr_h5 *f, const char *object, const char *name, hid_t type,
                                  void *value, const char *kind) {
    hid_t o = open_object(f, object);
    if (o < 0) return mr_fail(MR_ERR_FORMAT, "%s: no object '%s'", f->path, object);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    /* One value only: H5Aread writes every element, and `value` holds one. */
    hssize_t n = -1;
    if (a >= 0) {
        hid_t space = H5Aget_space(a);
        n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
        if (space >= 0) H5Sclose(space);
    }
    herr_t rc = a < 0 || n != 1 ? -1 : H5Aread(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    if (a >= 0 && n != 1)
        return mr_fail(MR_ERR_FORMAT, "%s: attribute %s on '%s' holds %lld values, expected one",
                       f->path, name, object, (long long)n);
    if (rc < 0)
        return mr_fail(MR_ERR_FORMAT, "%s: '%s' has no %s attribute %s", f->path, object, kind,
                       name);
    return MR_OK;
}

mr_status mr_h5_get_attr_i64(mr_h5 *f, const char *object, const char *name, int64_t *value) {
    return read_number_attr(f, object, name, H5T_NATIVE_INT64, value, "integer");
}

mr_status mr_h5_get_attr_f64(mr_h5 *f, const char *object, const char *name, double *value) {
    return read_number_attr(f, object, name, H5T_NATIVE_DOUBLE, value, "numeric");
}

mr_status mr_h5_dtype(mr_h5 *f, const char *dataset, char *name, size_t size) {
    if (!mr_h5_exists(f, dataset))
        return mr_fail(MR_ERR_FORMAT, "%s: no dataset '%s'", f->path, dataset);
    hid_t ds = H5Dopen2((hid_t)f->id, dataset, H5P_DEFAULT);
    if (ds < 0) return mr_fail(MR_ERR_FORMAT, "%s: '%s' is not a dataset", f->path, dataset);
    hid_t t = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(t);
    size_t bytes = H5Tget_size(t);
    const char *kind = cls == H5T_FLOAT     ? "float"
                       : cls == H5T_INTEGER ? (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int")
                       : cls == H5T_STRING  ? "string"
                                            : "other";
    if (cls == H5T_FLOAT || cls == H5T_INTEGER)
        snprintf(name, size, "%s%zu", kind, bytes * 8);
    else
        snprintf(name, size, "%s", kind);
    H5Tclose(t);
    H5Dclose(ds);
    return MR_OK;
}

/* ---- walking ------------------------------------------------------------------------------ */

typedef struct {
    mr_h5_visit_fn fn;
    void *user;
    const char *prefix;
    mr_status status;
} visit_state;

static herr_t visit_cb(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj;
    visit_state *v = data;
    if (info->type != H5O_TYPE_DATASET || !strcmp(name, ".")) return 0;
    char full[1024];
    const char *sep = v->prefix[strlen(v->prefix) - 1] == '/' ? "" : "/";
    snprintf(full, sizeof full, "%s%s%s", v->prefix, sep, name);
    v->status = v->fn(full, v->user);
    return v->status == MR_OK ? 0 : 1;
}

mr_status mr_h5_visit_datasets(mr_h5 *f, const char *group, mr_h5_visit_fn fn, void *user) {
    if (!mr_h5_exists(f, group)) return mr_fail(MR_ERR_FORMAT, "%s: no group '%s'", f->path, group);
    hid_t g = H5Oopen((hid_t)f->id, group, H5P_DEFAULT);
    if (g < 0) return mr_fail(MR_ERR_FORMAT, "%s: cannot open '%s'", f->path, group);
    visit_state v = {fn, user, group, MR_OK};
    herr_t rc = H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &v, H5O_INFO_BASIC);
    H5Oclose(g);
    if (v.status != MR_OK) return v.status;
    if (rc < 0) return mr_fail(MR_ERR_FORMAT, "%s: cannot walk '%s'", f->path, group);
    return MR_OK;
}

/* ---- atomic files ----------------------------------------------------------------------- */

static mr_h5_save_fail_hook fail_hook;
static void *fail_user;

void mr_h5_set_save_fail_hook(mr_h5_save_fail_hook hook, void *user) {
    fail_hook = hook;
    fail_user = user;
}

static bool injected(const char *stage) {
    return fail_hook && fail_hook(stage, fail_user);
}

static void folder_of(const char *path, char *dir, size_t size) {
    mr_format(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        mr_format(dir, size, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

mr_status mr_h5_save_atomic(const char *path, mr_h5_fill_fn fill, void *user) {
    char tmp[4096], dir[4096], why[2048] = "";
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return mr_fail(MR_ERR_ARG, "%s: path too long", path);
    folder_of(path, dir, sizeof dir);
    const char *stage = "create";
    mr_h5 f;
    bool open_file = false, renamed = false;
    /* A temp file an interrupted save left behind is simply truncated by the create. */
    if (injected(stage)) {
        mr_format(why, sizeof why, "cannot create %s (simulated failure)", tmp);
    } else if (mr_h5_create(tmp, &f) != MR_OK) {
        mr_format(why, sizeof why, "cannot create %s (%s)", tmp, strerror(errno));
    } else {
        open_file = true;
        stage = "write";
        if (fill(&f, user) != MR_OK)
            mr_format(why, sizeof why, "%s", mr_last_error());
        else if (injected(stage))
            mr_format(why, sizeof why, "%s: simulated failure (disk full)", tmp);
    }
    if (!why[0]) {
        stage = "close";
        open_file = false;
        if (mr_h5_close(&f) != MR_OK)
            mr_format(why, sizeof why, "%s", mr_last_error());
        else if (injected(stage))
            mr_format(why, sizeof why, "%s: simulated failure", tmp);
    }
    if (!why[0]) {
        stage = "fsync";
        bool sim = injected(stage);
        if (sim || mr_fsync_path(tmp, false) != 0)
            mr_format(why, sizeof why, "cannot fsync %s (%s)", tmp,
                      sim ? "simulated failure" : strerror(errno));
    }
    if (!why[0]) {
        stage = "rename";
        bool sim = injected(stage);
        if (sim || rename(tmp, path) != 0)
            mr_format(why, sizeof why, "cannot rename %s to %s (%s)", tmp, path,
                      sim ? "simulated failure" : strerror(errno));
        else
            renamed = true;
    }
    if (!why[0]) {
        /* Without this the rename itself may not survive a power cut. */
        stage = "dirsync";
        bool sim = injected(stage);
        if (sim || mr_fsync_path(dir, true) != 0)
            mr_format(why, sizeof why, "cannot fsync folder %s (%s)", dir,
                      sim ? "simulated failure" : strerror(errno));
    }
    if (!why[0]) return MR_OK;
    if (open_file) h5_discard(&f);
    if (!renamed) {
        struct stat sb;
        if (stat(tmp, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(tmp);
    }
    return mr_fail(MR_ERR_IO, "%s: save failed at %s: %s; %s", path, stage, why,
                   renamed ? "the new file is in place but may not survive a crash"
                           : "any previous file of that name is untouched");
}
