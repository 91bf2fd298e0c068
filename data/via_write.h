/* Writing VIA 2.x annotation JSON (the "Export as JSON" form) and VIA 2.x project files: one
 * entry per image keyed by filename + size in bytes, polygon regions (integer or fractional
 * vertices) and a class attribute.
 * Opaque builder so callers never see cJSON; the file is written atomically (temp + rename). */
#ifndef MR_VIA_WRITE_H
#define MR_VIA_WRITE_H

#include <stdint.h>

#include "../core/status.h"

typedef struct mr_via_writer mr_via_writer;

/* NULL when out of memory. */
mr_via_writer *mr_via_writer_new(void);
void mr_via_writer_free(mr_via_writer *w);

/* Starts an image entry. `size` is the file size in bytes (VIA's key is filename + size);
 * `label`, when not NULL, becomes file_attributes {"label": label}, else file_attributes {}.
 * Images are written in the order they are added. */
mr_status mr_via_writer_add_image(mr_via_writer *w, const char *filename, int64_t size,
                                  const char *label);
/* Adds a polygon region to the last image: shape_attributes {name: "polygon", all_points_x,
 * all_points_y} (integers, no repeated closing vertex) and region_attributes
 * {"class": class_name}. */
mr_status mr_via_writer_add_polygon(mr_via_writer *w, const int *xs, const int *ys, int n_points,
                                    const char *class_name);
/* The same with fractional vertices (pixel corners at x.5), written as JSON numbers: VIA and
 * mrcnn's loader read them as they are. */
mr_status mr_via_writer_add_polygon_d(mr_via_writer *w, const double *xs, const double *ys,
                                      int n_points, const char *class_name);
/* Writes everything added so far to `path` (temp file in the same folder, fsync, rename). */
mr_status mr_via_writer_save(const mr_via_writer *w, const char *path);

/* Adds a text attribute to the region added last (e.g. "score": "0.93"), beside its class. A
 * project file declares it as a VIA text attribute so it shows in VIA's editor. */
mr_status mr_via_writer_set_region_attr(mr_via_writer *w, const char *key, const char *value);

/* A VIA 2.x project, as VIA 2.0.10's "Save project" writes and "Load project" opens. */
typedef struct {
    const char *name;               /* _via_settings.project.name; NULL: "mrcnn" */
    const char *default_filepath;   /* prefix VIA puts before every filename (a folder ending in
                                       '/'); NULL or "": filenames are used as they are, which VIA
                                       and mrcnn resolve against the project file's folder */
    const char *const *class_names; /* options of the "class" dropdown; a leading "BG" is left
                                       out */
    int n_class_names;
} mr_via_project_options;

/* Writes everything added so far as a project file: _via_settings (regions labelled and
 * coloured by class), _via_img_metadata, _via_attributes (region "class" as a dropdown of the
 * class names, one text attribute per other region attribute key used), _via_data_format_version
 * "2.0.10" and _via_image_id_list in the order images were added. Atomic as mr_via_writer_save. */
mr_status mr_via_writer_save_project(const mr_via_writer *w, const char *path,
                                     const mr_via_project_options *opt);

#endif
