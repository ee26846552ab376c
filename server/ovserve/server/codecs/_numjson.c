/*
 * _numjson: take the big numeric arrays out of a JSON body, straight into machine numbers.
 *
 * Used only through ovserve/server/codecs/numjson.py (read its docstring first). Python's JSON
 * parsers build one Python object per number; for a 150 528-number tensor that is most of the
 * cost of a request. This scanner walks the body once, with the GIL released, and replaces every
 * object member whose value is a rectangular, non-empty nested array of at least `min_count`
 * JSON numbers by a marker string "\u0000<k>"; array k comes back as native-endian int64
 * (all integers) or float64 values plus its shape. The small remainder (the "skeleton") is
 * parsed by orjson as before, and numjson.py puts the arrays back in place of the markers.
 *
 * It never decides what is an error: anything it does not fully understand (a string, literal or
 * object inside an array, a ragged or empty array, a number outside the JSON grammar or beyond
 * what a double holds, an integer past 18 digits, an integer first and fractions after it, which
 * Python decoders type by the first number) stays in the skeleton as text, so the regular parser
 * sees it and words any error as before. It gives up on the whole body (returns None) only when
 * markers could be confused with the body's own strings (a \u0000 escape in it) or the nesting
 * is deeper than `max_depth`.
 *
 * Numbers: integers of up to 18 digits are exact int64 values; everything else is the correctly
 * rounded double, as Python's float() gives it: Clinger's fast path when the digits and the
 * power of ten are both exact doubles, else the Eisel-Lemire algorithm (eight digits at a time,
 * a table of 128-bit powers of ten that numjson.py computes and hands over with set_powers()),
 * else, for the rare case it cannot decide (exact binary fractions such as 0.21645355224609375,
 * near-halfway values, over 19 significant digits), the C library's strtod in the "C" locale.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* strtod_l */
#include <Python.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIMS 32
#define POW_MIN (-348)
#define POW_MAX 347
#define POW_COUNT (POW_MAX - POW_MIN + 1)

/* [i][0] low, [i][1] high 64 bits of 10^(i + POW_MIN), normalized, rounded down. */
static uint64_t powers[POW_COUNT][2];
static int powers_set = 0;
static locale_t c_locale = (locale_t)0; /* for strtod_l: '.' whatever the process's locale */

static const double exact_pow10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ------------------------------------------------------------------------- decimal -> double */

static inline void mul64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
    __uint128_t r = (__uint128_t)a * b;
    *hi = (uint64_t)(r >> 64);
    *lo = (uint64_t)r;
}

/* man * 10^exp10 as the correctly rounded double; 0 when undecided (the caller gives up). */
static int eisel_lemire(uint64_t man, int exp10, int neg, double *out) {
    if (exp10 < POW_MIN || exp10 > POW_MAX) return 0;
    int clz = __builtin_clzll(man); /* man != 0 here */
    man <<= clz;
    uint64_t ret_exp2 = (uint64_t)(((217706 * exp10) >> 16) + 64 + 1023) - (uint64_t)clz;
    uint64_t x_hi, x_lo;
    mul64(man, powers[exp10 - POW_MIN][1], &x_hi, &x_lo);
    if ((x_hi & 0x1FF) == 0x1FF && x_lo + man < man) {
        uint64_t y_hi, y_lo;
        mul64(man, powers[exp10 - POW_MIN][0], &y_hi, &y_lo);
        uint64_t merged_hi = x_hi, merged_lo = x_lo + y_hi;
        if (merged_lo < x_lo) merged_hi++;
        if ((merged_hi & 0x1FF) == 0x1FF && merged_lo + 1 == 0 && y_lo + man < man) return 0;
        x_hi = merged_hi;
        x_lo = merged_lo;
    }
    uint64_t msb = x_hi >> 63;
    uint64_t ret_man = x_hi >> (msb + 9);
    ret_exp2 -= 1 ^ msb;
    if (x_lo == 0 && (x_hi & 0x1FF) == 0 && (ret_man & 3) == 1) return 0; /* halfway */
    ret_man += ret_man & 1;
    ret_man >>= 1;
    if (ret_man >> 53) {
        ret_man >>= 1;
        ret_exp2 += 1;
    }
    if (ret_exp2 - 1 >= 0x7FF - 1) return 0; /* subnormal, infinite */
    uint64_t bits = (ret_exp2 << 52) | (ret_man & 0x000FFFFFFFFFFFFFULL);
    if (neg) bits |= 0x8000000000000000ULL;
    memcpy(out, &bits, sizeof bits);
    return 1;
}

/* ------------------------------------------------------------------------------ numbers */

enum { NUM_NONE = 0, NUM_INT = 1, NUM_FLOAT = 2 };

/* Eight ASCII digits at once (little-endian loads), as the fast_float library does it. */
static inline uint64_t load8(const char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int eight_digits(uint64_t v) {
    return !(((v + 0x4646464646464646ULL) | (v - 0x3030303030303030ULL)) & 0x8080808080808080ULL);
}

static inline uint64_t eight_digits_value(uint64_t v) {
    v -= 0x3030303030303030ULL;
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
         (((v >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
    return (uint32_t)v;
}

/* The rare number Eisel-Lemire leaves undecided (an exact binary fraction such as
 * 0.21645355224609375, a near-halfway case, more than 19 significant digits): the C library's
 * correctly rounded strtod, in the "C" locale. 0 if it overflows or the text is too long. */
static int slow_double(const char *start, const char *stop, double *out) {
    char text[128];
    size_t n = (size_t)(stop - start);
    if (c_locale == (locale_t)0 || n >= sizeof text) return 0;
    memcpy(text, start, n);
    text[n] = 0;
    double d = strtod_l(text, NULL, c_locale);
    if (!isfinite(d)) return 0;
    *out = d;
    return 1;
}

/* One JSON number at *pp (advanced past it): NUM_INT with *ival and *dval, NUM_FLOAT with
 * *dval, or NUM_NONE if the text is not a JSON number this scanner can convert exactly. */
static int parse_number(const char **pp, const char *end, int64_t *ival, double *dval) {
    const char *start = *pp, *p = *pp;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end) return NUM_NONE;
    uint64_t man = 0;
    int digits = 0;    /* significant digits in man */
    int truncated = 0; /* more than 19 of them: man holds the first 19 */
    int exp10 = 0;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') return NUM_NONE; /* leading zero */
    } else if (*p >= '1' && *p <= '9') {
        while (end - p >= 8 && digits <= 11 && eight_digits(load8(p))) {
            man = man * 100000000 + eight_digits_value(load8(p));
            digits += 8;
            p += 8;
        }
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                man = man * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                truncated = 1;
                exp10++;
            }
            p++;
        }
    } else {
        return NUM_NONE;
    }
    int is_int = 1;
    if (p < end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return NUM_NONE;
        if (man == 0) {
            while (p < end && *p == '0') { /* leading zeros of the fraction */
                exp10--;
                p++;
            }
        }
        while (end - p >= 8 && digits <= 11 && eight_digits(load8(p))) {
            man = man * 100000000 + eight_digits_value(load8(p));
            digits += 8;
            exp10 -= 8;
            p += 8;
        }
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                man = man * 10 + (uint64_t)(*p - '0');
                digits++;
                exp10--;
            } else {
                truncated = 1;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9') return NUM_NONE;
        int e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000) e = e * 10 + (*p - '0');
            p++;
        }
        exp10 += eneg ? -e : e;
    }
    *pp = p;
    if (is_int) {
        if (truncated || digits > 18) return NUM_NONE; /* beyond int64: Python's int decides */
        int64_t v = (int64_t)man;
        *ival = neg ? -v : v;
        *dval = (double)*ival; /* exact below 2^53, else the one correct rounding */
        return NUM_INT;
    }
    double d;
    if (man == 0) {
        d = 0.0;
    } else if (!truncated && man <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        d = (double)man; /* both exact: one correctly rounded operation (Clinger) */
        d = exp10 < 0 ? d / exact_pow10[-exp10] : d * exact_pow10[exp10];
    } else if (truncated || !eisel_lemire(man, exp10, 0, &d)) {
        if (!slow_double(start + neg, p, &d)) {
            *pp = start;
            return NUM_NONE;
        }
    }
    *dval = neg ? -d : d;
    return NUM_FLOAT;
}

/* -------------------------------------------------------------------------- growable buffers */

/* The type of an array is its first number's: all int64 if that is an integer (a fraction
 * later leaves the array to the regular path, see the file's comment), all double otherwise. */
typedef union {
    int64_t i;
    double d;
} Number;

typedef struct {
    Number *values;
    size_t count, cap;
    int ndim;
    Py_ssize_t shape[MAX_DIMS];
    int all_int;
} Array;

typedef struct {
    Array *items;
    size_t count, cap;
} Arrays;

static void array_free(Array *a) {
    free(a->values);
    a->values = NULL;
}

/* Append one number; 0 when out of memory or an integer-typed array meets a fraction. */
static int array_push(Array *a, int kind, int64_t ival, double dval) {
    if (a->count == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        Number *values = realloc(a->values, cap * sizeof *values);
        if (!values) return 0;
        a->values = values;
        a->cap = cap;
    }
    if (a->count == 0) a->all_int = kind == NUM_INT;
    if (a->all_int) {
        if (kind != NUM_INT) return 0;
        a->values[a->count].i = ival;
    } else {
        a->values[a->count].d = dval;
    }
    a->count++;
    return 1;
}

static inline int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline const char *skip_space(const char *p, const char *end) {
    while (p < end && is_space(*p)) p++;
    return p;
}

/* --------------------------------------------------------------------------- numeric arrays */

/* A rectangular, non-empty nested array of numbers at *pp ('['), into *a. On success *pp is
 * past its ']'. Returns 0 (nothing kept, *pp unchanged) for anything else. */
static int parse_numeric_array(const char **pp, const char *end, int max_dims, Array *a) {
    const char *p = *pp;
    Py_ssize_t counts[MAX_DIMS];
    int level = 0, ndim = -1;
    memset(a, 0, sizeof *a);
    for (int i = 0; i < MAX_DIMS; i++) a->shape[i] = -1;
    counts[0] = 0;
    if (max_dims < 1) return 0;
    p++; /* the '[' */
    for (;;) {
        /* an element is expected */
        p = skip_space(p, end);
        if (p >= end) goto fail;
        if (*p == '[') {
            /* leaves sit at level ndim - 1; a new level must leave room for them */
            if ((ndim >= 0 && level + 1 >= ndim) || level + 2 > max_dims) goto fail;
            level++;
            counts[level] = 0;
            p++;
            continue;
        }
        if (ndim < 0) {
            ndim = level + 1;
        } else if (level != ndim - 1) {
            goto fail; /* a number where the first element had an array */
        }
        int64_t ival = 0;
        double dval = 0;
        int kind = parse_number(&p, end, &ival, &dval);
        if (kind == NUM_NONE || !array_push(a, kind, ival, dval)) goto fail;
        counts[level]++;
        /* after an element: ',' or the end of one or more arrays */
        for (;;) {
            p = skip_space(p, end);
            if (p >= end) goto fail;
            if (*p == ',') {
                p++;
                break;
            }
            if (*p != ']') goto fail;
            p++;
            if (a->shape[level] < 0) {
                a->shape[level] = counts[level];
            } else if (a->shape[level] != counts[level]) {
                goto fail; /* ragged */
            }
            if (level == 0) {
                a->ndim = ndim;
                *pp = p;
                return 1;
            }
            level--;
            counts[level]++;
        }
    }
fail:
    array_free(a);
    return 0;
}

/* ---------------------------------------------------------------------------------- scanner */

typedef struct {
    char *out;
    size_t len;
    Arrays arrays;
    int gave_up;
} Scan;

static int arrays_add(Arrays *arrays, const Array *a) {
    if (arrays->count == arrays->cap) {
        size_t cap = arrays->cap ? arrays->cap * 2 : 8;
        Array *items = realloc(arrays->items, cap * sizeof *items);
        if (!items) return 0;
        arrays->items = items;
        arrays->cap = cap;
    }
    arrays->items[arrays->count++] = *a;
    return 1;
}

static void scan_free(Scan *s) {
    for (size_t i = 0; i < s->arrays.count; i++) array_free(&s->arrays.items[i]);
    free(s->arrays.items);
    free(s->out);
    s->out = NULL;
    s->arrays.items = NULL;
}

/* Copy the body into s->out, arrays taken out; 0 on giving up (s->gave_up) or no memory. */
static int scan(const char *body, size_t n, Py_ssize_t min_count, int max_depth, Scan *s) {
    const char *p = body, *end = body + n;
    char *o;
    int depth = 0;
    char last = 0; /* the last structural character copied */
    /* The skeleton is never longer than the body: a marker ("\u0000" + index + '"') is
     * shorter than any array it replaces, which holds at least 8 numbers. */
    s->out = o = malloc(n + 1);
    if (!o) return 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            const char *start = p++;
            while (p < end && *p != '"') {
                if (*p == '\\') {
                    if (end - p >= 6 && memcmp(p, "\\u0000", 6) == 0) {
                        s->gave_up = 1; /* a marker could not be told from this string */
                        return 0;
                    }
                    p++;
                }
                p++;
            }
            if (p < end) p++;
            if (p > end) p = end;
            memcpy(o, start, (size_t)(p - start));
            o += p - start;
            last = '"';
            continue;
        }
        if (c == '[' && last == ':') {
            Array a;
            const char *q = p;
            if (parse_numeric_array(&q, end, max_depth - depth < MAX_DIMS ? max_depth - depth : MAX_DIMS, &a)) {
                if ((Py_ssize_t)a.count >= min_count) {
                    if (!arrays_add(&s->arrays, &a)) {
                        array_free(&a);
                        return 0;
                    }
                    o += sprintf(o, "\"\\u0000%zu\"", s->arrays.count - 1);
                    p = q;
                    last = '"';
                    continue;
                }
                array_free(&a); /* small: orjson is as fast, leave it */
                memcpy(o, p, (size_t)(q - p));
                o += q - p;
                p = q;
                last = ']';
                continue;
            }
        }
        if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                s->gave_up = 1;
                return 0;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
        if (!is_space(c)) last = c;
        *o++ = c;
        p++;
    }
    s->len = (size_t)(o - s->out);
    return 1;
}

/* ------------------------------------------------------------------------------ Python API */

/* A read-write buffer over one array's malloc'd values, freed with the object: numpy.frombuffer
 * then takes the numbers without a copy (and keeps this object alive as long as it needs it). */
typedef struct {
    PyObject_HEAD
    void *data;
    Py_ssize_t size;
} Buffer;

static int buffer_get(PyObject *self, Py_buffer *view, int flags) {
    Buffer *b = (Buffer *)self;
    return PyBuffer_FillInfo(view, self, b->data, b->size, 0, flags);
}

static void buffer_dealloc(PyObject *self) {
    free(((Buffer *)self)->data);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs buffer_procs = {buffer_get, NULL};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_numjson.Buffer",
    .tp_basicsize = sizeof(Buffer),
    .tp_dealloc = buffer_dealloc,
    .tp_as_buffer = &buffer_procs,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The numbers of one array taken out of a body (native int64 or float64).",
};

/* (buffer, shape, all_int) for one array; the buffer takes over a->values. */
static PyObject *array_to_python(Array *a) {
    Buffer *buffer = PyObject_New(Buffer, &BufferType);
    if (!buffer) return NULL;
    Number *values = realloc(a->values, a->count * sizeof *values); /* give back the slack */
    buffer->data = values ? values : a->values;
    buffer->size = (Py_ssize_t)(a->count * sizeof *values);
    a->values = NULL;
    PyObject *shape = PyTuple_New(a->ndim);
    if (!shape) {
        Py_DECREF(buffer);
        return NULL;
    }
    for (int i = 0; i < a->ndim; i++) PyTuple_SET_ITEM(shape, i, PyLong_FromSsize_t(a->shape[i]));
    return Py_BuildValue("(NNO)", (PyObject *)buffer, shape, a->all_int ? Py_True : Py_False);
}

static PyObject *extract(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer body;
    Py_ssize_t min_count;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*ni", &body, &min_count, &max_depth)) return NULL;
    if (!powers_set) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_RuntimeError, "_numjson.set_powers() was not called");
        return NULL;
    }
    if (min_count < 8) min_count = 8;
    Scan s;
    memset(&s, 0, sizeof s);
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = scan(body.buf, (size_t)body.len, min_count, max_depth, &s);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&body);
    if (!ok) {
        int gave_up = s.gave_up;
        scan_free(&s);
        if (gave_up) Py_RETURN_NONE;
        return PyErr_NoMemory();
    }
    if (s.arrays.count == 0) {
        scan_free(&s);
        Py_RETURN_NONE;
    }
    PyObject *arrays = PyList_New((Py_ssize_t)s.arrays.count);
    PyObject *skeleton = PyBytes_FromStringAndSize(s.out, (Py_ssize_t)s.len);
    if (!arrays || !skeleton) goto error;
    for (size_t i = 0; i < s.arrays.count; i++) {
        PyObject *item = array_to_python(&s.arrays.items[i]);
        if (!item) goto error;
        PyList_SET_ITEM(arrays, (Py_ssize_t)i, item);
    }
    scan_free(&s);
    return Py_BuildValue("(NN)", skeleton, arrays);
error:
    Py_XDECREF(arrays);
    Py_XDECREF(skeleton);
    scan_free(&s);
    return NULL;
}

static PyObject *set_powers(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer table;
    if (!PyArg_ParseTuple(args, "y*", &table)) return NULL;
    if (table.len != (Py_ssize_t)sizeof powers) {
        PyBuffer_Release(&table);
        return PyErr_Format(PyExc_ValueError, "the table must hold %zu bytes", sizeof powers);
    }
    memcpy(powers, table.buf, sizeof powers);
    powers_set = 1;
    if (c_locale == (locale_t)0) c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyObject *parse_float(PyObject *self, PyObject *args) {
    (void)self;
    /* For tests: one number as the scanner converts it; None when it would leave it as text. */
    Py_buffer text;
    if (!PyArg_ParseTuple(args, "y*", &text)) return NULL;
    const char *p = text.buf, *end = p + text.len;
    int64_t ival = 0;
    double dval = 0;
    int kind = powers_set ? parse_number(&p, end, &ival, &dval) : NUM_NONE;
    int whole = p == end;
    PyBuffer_Release(&text);
    if (kind == NUM_NONE || !whole) Py_RETURN_NONE;
    if (kind == NUM_INT) return PyLong_FromLongLong(ival);
    return PyFloat_FromDouble(dval);
}

static PyMethodDef methods[] = {
    {"extract", extract, METH_VARARGS,
     "extract(body, min_count, max_depth) -> (skeleton, [(data, shape, all_int)]) or None"},
    {"set_powers", set_powers, METH_VARARGS, "set_powers(table): the 128-bit powers of ten"},
    {"parse_float", parse_float, METH_VARARGS, "parse_float(text) -> int | float | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_numjson", NULL, -1, methods};

PyMODINIT_FUNC PyInit__numjson(void) {
    if (PyType_Ready(&BufferType) < 0) return NULL;
    return PyModule_Create(&module);
}
