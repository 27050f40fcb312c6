/* streams._construct: `trusted(cls, values)` in C, built with the compiled core, and
 * `plain_getattr(cls)` (below).
 *
 * The same function as schemas.decisions.trusted (the reference, and what runs without a
 * build): a pydantic model from a dict of values the core computed itself, every field
 * named, without validation. The Python version sets four slots through their descriptors
 * and costs ~0.5 us a call; the core makes ~3 calls an event. This one allocates the object
 * and stores the slots directly (~0.09 us).
 *
 * Only for pydantic models that keep BaseModel's layout: a subclass of BaseModel that does
 * not define __new__ (checked once per class, as the Python version does).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* BaseModel, and where its slots are in an instance. */
static PyTypeObject *base_model = NULL;
static Py_ssize_t fields_set_at = -1, extra_at = -1, private_at = -1;
/* Each model class's field names, shared by its instances (a cache: classes do not change). */
static PyObject *fields_of = NULL;

static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name); /* borrowed */
    if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type) {
        PyErr_Format(PyExc_ImportError,
                     "streams._construct: %s.%s is not a slot: this pydantic is not the "
                     "one it was written for", type->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_ImportError, "streams._construct: %s.%s is not an object slot",
                     type->tp_name, name);
        return -1;
    }
    return member->offset;
}

/* The field names of `cls`, learnt on its first call (borrowed from the cache). */
static PyObject *
learn(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, base_model)) {
        PyErr_Format(PyExc_TypeError, "trusted() builds pydantic models, not %R", cls);
        return NULL;
    }
    if (((PyTypeObject *)cls)->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_Format(PyExc_TypeError, "%s defines __new__: not built by trusted()",
                     ((PyTypeObject *)cls)->tp_name);
        return NULL;
    }
    PyObject *model_fields = PyObject_GetAttrString(cls, "model_fields");
    if (model_fields == NULL) {
        return NULL;
    }
    PyObject *fields = PySet_New(model_fields);
    Py_DECREF(model_fields);
    if (fields == NULL) {
        return NULL;
    }
    int failed = PyDict_SetItem(fields_of, cls, fields);
    Py_DECREF(fields); /* the cache holds it */
    return failed ? NULL : fields;
}

static inline void
set_slot(PyObject *obj, Py_ssize_t at, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)obj + at);
    PyObject *old = *slot;
    Py_INCREF(value);
    *slot = value;
    Py_XDECREF(old);
}

static PyObject *
trusted(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "trusted(cls, values) takes 2 arguments, %zd given",
                     nargs);
        return NULL;
    }
    PyObject *cls = args[0], *values = args[1];
    if (!PyDict_CheckExact(values)) {
        PyErr_Format(PyExc_TypeError, "trusted() takes a dict of values, not %.200s",
                     Py_TYPE(values)->tp_name);
        return NULL;
    }
    PyObject *fields = PyDict_GetItemWithError(fields_of, cls); /* borrowed */
    if (fields == NULL) {
        if (PyErr_Occurred() || (fields = learn(cls)) == NULL) {
            return NULL;
        }
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) {
        return NULL;
    }
    if (PyObject_GenericSetDict(obj, values, NULL) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    set_slot(obj, fields_set_at, fields);
    set_slot(obj, extra_at, Py_None);
    set_slot(obj, private_at, Py_None);
    return obj;
}

/* The attribute reads of a model class, made those of a plain class.
 *
 * BaseModel defines __getattr__ (for private attributes and extra fields), so CPython gives
 * every model class the slot that looks for it on each read: a field read costs ~3.5x a plain
 * object's, from C and from Python alike (Python's interpreter does not specialize it).
 * `streams.construct.plain_attributes` checks that a class has neither private attributes
 * nor extra fields (its __getattr__ then only ever raises AttributeError, as the generic
 * read does) and calls this. A later change of the class's __getattr__ or
 * __getattribute__ puts CPython's slot back. */
static int
model_class(PyObject *cls, const char *what)
{
    if (!PyType_Check(cls) || (PyTypeObject *)cls == base_model ||
        !PyType_IsSubtype((PyTypeObject *)cls, base_model) ||
        !(((PyTypeObject *)cls)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a subclass of pydantic's BaseModel, not %R",
                     what, cls);
        return 0;
    }
    return 1;
}

static PyObject *
plain_getattr(PyObject *module, PyObject *cls)
{
    if (!model_class(cls, "plain_getattr")) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_getattro == PyObject_GenericGetAttr) {
        Py_RETURN_FALSE;
    }
    type->tp_getattro = PyObject_GenericGetAttr;
    PyType_Modified(type);
    Py_RETURN_TRUE;
}

static PyObject *
reads_plainly(PyObject *module, PyObject *cls)
{
    if (!model_class(cls, "reads_plainly")) {
        return NULL;
    }
    return PyBool_FromLong(((PyTypeObject *)cls)->tp_getattro == PyObject_GenericGetAttr);
}

static PyMethodDef methods[] = {
    {"trusted", (PyCFunction)(void (*)(void))trusted, METH_FASTCALL,
     "trusted(cls, values): a model from values naming every field, unvalidated."},
    {"plain_getattr", plain_getattr, METH_O,
     "plain_getattr(cls): read cls's attributes as a plain class does; True if it changed."},
    {"reads_plainly", reads_plainly, METH_O,
     "reads_plainly(cls): whether cls reads its attributes as a plain class does."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "streams._construct",
    "schemas.decisions.trusted in C, and plain attribute reads (streams/construct.c).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__construct(void)
{
    PyObject *pydantic = PyImport_ImportModule("pydantic");
    if (pydantic == NULL) {
        return NULL;
    }
    PyObject *base = PyObject_GetAttrString(pydantic, "BaseModel");
    Py_DECREF(pydantic);
    if (base == NULL) {
        return NULL;
    }
    if (!PyType_Check(base)) {
        Py_DECREF(base);
        PyErr_SetString(PyExc_ImportError, "streams._construct: pydantic.BaseModel is not a class");
        return NULL;
    }
    base_model = (PyTypeObject *)base; /* kept for the life of the process */
    if ((fields_set_at = slot_offset(base_model, "__pydantic_fields_set__")) < 0 ||
        (extra_at = slot_offset(base_model, "__pydantic_extra__")) < 0 ||
        (private_at = slot_offset(base_model, "__pydantic_private__")) < 0) {
        return NULL;
    }
    if (fields_of == NULL && (fields_of = PyDict_New()) == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
