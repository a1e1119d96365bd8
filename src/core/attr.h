/* attr.h - node attributes in a form independent of any file format.
 *
 * The ONNX importer translates AttributeProto into these; ops read them
 * through the typed getters, which supply defaults and check types. */
#ifndef LEGO_CORE_ATTR_H
#define LEGO_CORE_ATTR_H

#include "status.h"

typedef enum attr_type {
    ATTR_FLOAT = 1,
    ATTR_INT = 2,
    ATTR_STRING = 3,
    ATTR_TENSOR = 4,
    ATTR_FLOATS = 6,
    ATTR_INTS = 7
} attr_type; /* numbers follow ONNX AttributeProto.AttributeType */

typedef struct lego_attr {
    char *name;
    attr_type type;
    int64_t i;
    float f;
    char *s;
    int n;          /* element count of ints or floats */
    int64_t *ints;
    float *floats;
    lego_tensor *t;
} lego_attr;

typedef struct attr_list {
    int n;
    lego_attr *a;
} attr_list;

const lego_attr *attr_find(const attr_list *l, const char *name);
/* Getters return the default when the attribute is absent and an error when
 * it is present with another type. */
lego_status attr_get_int(const attr_list *l, const char *name, int64_t def, int64_t *out);
lego_status attr_get_float(const attr_list *l, const char *name, float def, float *out);
/* out gets a pointer into the attribute (or def); *n its length. */
lego_status attr_get_ints(const attr_list *l, const char *name, const int64_t **out, int *n);
lego_status attr_get_floats(const attr_list *l, const char *name, const float **out, int *n);
lego_status attr_get_string(const attr_list *l, const char *name, const char *def,
                            const char **out);
void attr_list_free(attr_list *l);

/* Builders, for graphs made in code (the built-in models). */
lego_status attr_add_int(attr_list *l, const char *name, int64_t v);
lego_status attr_add_float(attr_list *l, const char *name, float v);
lego_status attr_add_ints(attr_list *l, const char *name, const int64_t *v, int n);
/* A tensor attribute holding a deep copy of t (a Constant node's value). */
lego_status attr_add_tensor(attr_list *l, const char *name, const lego_tensor *t);
/* Set an int attribute, replacing one of that name (of any type). */
lego_status attr_set_int(attr_list *l, const char *name, int64_t v);
/* Deep copy of src into dst (which is overwritten, not freed); on failure
 * dst is left empty. */
lego_status attr_list_copy(const attr_list *src, attr_list *dst);

#endif
