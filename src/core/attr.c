/* attr.c - typed access to node attributes. */
#include "attr.h"

#include <stdlib.h>
#include <string.h>

#include "tensor.h"

const lego_attr *attr_find(const attr_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->a[i].name, name) == 0)
            return &l->a[i];
    return NULL;
}

static lego_status wrong_type(const lego_attr *a, const char *want)
{
    return lego_error(LEGO_ERR_FORMAT, "attribute '%s' should be %s", a->name, want);
}

lego_status attr_get_int(const attr_list *l, const char *name, int64_t def, int64_t *out)
{
    const lego_attr *a = attr_find(l, name);
    *out = def;
    if (!a)
        return lego_ok();
    if (a->type != ATTR_INT)
        return wrong_type(a, "an int");
    *out = a->i;
    return lego_ok();
}

lego_status attr_get_float(const attr_list *l, const char *name, float def, float *out)
{
    const lego_attr *a = attr_find(l, name);
    *out = def;
    if (!a)
        return lego_ok();
    if (a->type == ATTR_INT) { /* some exporters write whole floats as ints */
        *out = (float)a->i;
        return lego_ok();
    }
    if (a->type != ATTR_FLOAT)
        return wrong_type(a, "a float");
    *out = a->f;
    return lego_ok();
}

lego_status attr_get_ints(const attr_list *l, const char *name, const int64_t **out, int *n)
{
    const lego_attr *a = attr_find(l, name);
    if (!a)
        return lego_ok(); /* caller's defaults stay */
    if (a->type != ATTR_INTS)
        return wrong_type(a, "a list of ints");
    *out = a->ints;
    *n = a->n;
    return lego_ok();
}

lego_status attr_get_floats(const attr_list *l, const char *name, const float **out, int *n)
{
    const lego_attr *a = attr_find(l, name);
    if (!a)
        return lego_ok();
    if (a->type != ATTR_FLOATS)
        return wrong_type(a, "a list of floats");
    *out = a->floats;
    *n = a->n;
    return lego_ok();
}

lego_status attr_get_string(const attr_list *l, const char *name, const char *def,
                            const char **out)
{
    const lego_attr *a = attr_find(l, name);
    *out = def;
    if (!a)
        return lego_ok();
    if (a->type != ATTR_STRING)
        return wrong_type(a, "a string");
    *out = a->s;
    return lego_ok();
}

void attr_list_free(attr_list *l)
{
    for (int i = 0; i < l->n; i++) {
        lego_attr *a = &l->a[i];
        free(a->name);
        free(a->s);
        free(a->ints);
        free(a->floats);
        lego_tensor_free(a->t);
    }
    free(l->a);
    l->a = NULL;
    l->n = 0;
}

static lego_attr *attr_append(attr_list *l, const char *name, attr_type type)
{
    lego_attr *a = realloc(l->a, sizeof *a * (size_t)(l->n + 1));
    if (!a)
        return NULL;
    l->a = a;
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (!copy)
        return NULL;
    memcpy(copy, name, len);
    a = &l->a[l->n++];
    memset(a, 0, sizeof *a);
    a->name = copy;
    a->type = type;
    return a;
}

lego_status attr_add_int(attr_list *l, const char *name, int64_t v)
{
    lego_attr *a = attr_append(l, name, ATTR_INT);
    if (!a)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    a->i = v;
    return lego_ok();
}

lego_status attr_add_float(attr_list *l, const char *name, float v)
{
    lego_attr *a = attr_append(l, name, ATTR_FLOAT);
    if (!a)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    a->f = v;
    return lego_ok();
}

lego_status attr_add_ints(attr_list *l, const char *name, const int64_t *v, int n)
{
    lego_attr *a = attr_append(l, name, ATTR_INTS);
    if (!a)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    a->ints = malloc(sizeof *a->ints * (size_t)(n + 1));
    if (!a->ints)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    memcpy(a->ints, v, sizeof *v * (size_t)n);
    a->n = n;
    return lego_ok();
}

lego_status attr_add_tensor(attr_list *l, const char *name, const lego_tensor *t)
{
    lego_attr *a = attr_append(l, name, ATTR_TENSOR);
    if (!a)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    a->t = malloc(sizeof *a->t);
    if (!a->t)
        return lego_error(LEGO_ERR_NOMEM, "out of memory");
    lego_status st = tensor_clone(t, a->t);
    if (st.code) {
        free(a->t);
        a->t = NULL;
    }
    return st;
}

lego_status attr_set_int(attr_list *l, const char *name, int64_t v)
{
    for (int i = 0; i < l->n; i++) {
        lego_attr *a = &l->a[i];
        if (strcmp(a->name, name) != 0)
            continue;
        free(a->s), free(a->ints), free(a->floats);
        lego_tensor_free(a->t);
        a->s = NULL, a->ints = NULL, a->floats = NULL, a->t = NULL, a->n = 0;
        a->type = ATTR_INT;
        a->i = v;
        return lego_ok();
    }
    return attr_add_int(l, name, v);
}

static void *dup_mem(const void *p, size_t bytes)
{
    void *d = malloc(bytes ? bytes : 1);
    if (d && bytes)
        memcpy(d, p, bytes);
    return d;
}

lego_status attr_list_copy(const attr_list *src, attr_list *dst)
{
    dst->n = 0;
    dst->a = NULL;
    for (int i = 0; i < src->n; i++) {
        const lego_attr *s = &src->a[i];
        lego_attr *a = attr_append(dst, s->name, s->type);
        bool ok = a != NULL;
        if (ok) {
            a->i = s->i;
            a->f = s->f;
            a->n = s->n;
            if (s->s)
                ok &= (a->s = dup_mem(s->s, strlen(s->s) + 1)) != NULL;
            if (s->ints)
                ok &= (a->ints = dup_mem(s->ints, sizeof *s->ints * (size_t)s->n)) != NULL;
            if (s->floats)
                ok &= (a->floats = dup_mem(s->floats, sizeof *s->floats * (size_t)s->n)) != NULL;
            if (s->t) {
                a->t = malloc(sizeof *a->t);
                lego_status st = a->t ? tensor_clone(s->t, a->t) : lego_error(LEGO_ERR_NOMEM, "out of memory");
                if (st.code) {
                    lego_status_free(&st);
                    free(a->t);
                    a->t = NULL;
                    ok = false;
                }
            }
        }
        if (!ok) {
            attr_list_free(dst);
            return lego_error(LEGO_ERR_NOMEM, "out of memory copying attributes");
        }
    }
    return lego_ok();
}
