/*
 * xen_remus_compat._checkpoint: the legacy xen.lowlevel.checkpoint API
 * (legacy-api.md §10.1, §10.4, §14) over libcheckpoint on libxenguest 4.17.
 *
 * start() drops the GIL around xc_domain_save; each callback takes it back
 * only while Python runs, on the thread that called start().  A callback
 * that raises (or a signal handler that raises while we wait) stops the
 * checkpointing; the exception object is kept and re-raised from start()
 * once the guest runs again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "libcheckpoint.h"

static PyObject *CheckpointError;

typedef struct {
    PyObject_HEAD
    struct cp_state cp;
    PyThreadState *tstate;
    PyObject *callbacks[3];             /* suspend, postcopy, checkpoint */
    PyObject *logdirty_cb;              /* HVM: the qemu log-dirty switch */
    PyObject *exc_type, *exc_value, *exc_tb;
    int busy;
} Checkpointer;

enum { CB_SUSPEND, CB_POSTCOPY, CB_CHECKPOINT };

/* ---------------------------------------------------------------- errors */

/* error(message) with .errno (None when unknown); never a NULL message. */
static PyObject *raise_error(const char *message, int errnum)
{
    PyObject *exc, *code;

    if (!message || !*message)
        message = "checkpoint operation failed";
    exc = PyObject_CallFunction(CheckpointError, "s", message);
    if (!exc)
        return NULL;
    code = errnum > 0 ? PyLong_FromLong(errnum) : Py_NewRef(Py_None);
    if (!code || PyObject_SetAttrString(exc, "errno", code) < 0) {
        Py_XDECREF(code);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(code);
    PyErr_SetObject(CheckpointError, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *raise_cp_error(Checkpointer *self)
{
    return raise_error(self->cp.errstr, self->cp.err_errno);
}

/* Keep the first exception raised during start(), with its traceback. */
static void stash_exception(Checkpointer *self)
{
    PyObject *t, *v, *tb;

    PyErr_Fetch(&t, &v, &tb);
    if (self->exc_type) {
        /* A later one (e.g. a second signal) loses to the first. */
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return;
    }
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v)
        PyException_SetTraceback(v, tb);
    self->exc_type = t;
    self->exc_value = v;
    self->exc_tb = tb;
}

static void clear_exception(Checkpointer *self)
{
    Py_CLEAR(self->exc_type);
    Py_CLEAR(self->exc_value);
    Py_CLEAR(self->exc_tb);
}

/* ----------------------------------------------------------------- hooks */

/* A callback's result as a verdict (called with the GIL; steals @r).
 * None or truthy: go on; falsy: stop; NULL (it raised): stop and raise later. */
static int verdict_of(Checkpointer *self, PyObject *r)
{
    int truth;

    if (!r) {
        stash_exception(self);
        return CP_EXCEPTION;
    }
    truth = r == Py_None ? 1 : PyObject_IsTrue(r);
    Py_DECREF(r);
    if (truth < 0) {
        stash_exception(self);
        return CP_EXCEPTION;
    }
    return truth ? CP_GO : CP_STOP;
}

/* Run one callback with the GIL.  None or truthy: go on; falsy: stop;
 * an exception (from it, or a signal handler run first): stop and raise
 * later.  @absent is the verdict when no callback was given. */
static int run_callback(Checkpointer *self, int which, int absent)
{
    PyObject *cb = self->callbacks[which];
    int verdict;

    PyEval_RestoreThread(self->tstate);
    if (PyErr_CheckSignals() < 0) {
        stash_exception(self);
        verdict = CP_EXCEPTION;
    } else if (!cb) {
        verdict = absent;
    } else {
        verdict = verdict_of(self, PyObject_CallNoArgs(cb));
    }
    self->tstate = PyEval_SaveThread();
    return verdict;
}

static int hook_suspend(void *opaque)
{
    return run_callback(opaque, CB_SUSPEND, CP_GO);
}

static int hook_postcopy(void *opaque)
{
    return run_callback(opaque, CB_POSTCOPY, CP_GO);
}

/* Without a checkpoint callback one checkpoint is taken (§10.4). */
static int hook_checkpoint(void *opaque)
{
    return run_callback(opaque, CB_CHECKPOINT, CP_STOP);
}

/* HVM: logdirty_cb(enable) switches the device model's log-dirty
 * tracking; None or truthy: done, falsy: failed, raises: stop and raise. */
static int hook_logdirty(void *opaque, unsigned int enable)
{
    Checkpointer *self = opaque;
    int verdict;

    PyEval_RestoreThread(self->tstate);
    verdict = verdict_of(self, PyObject_CallFunction(self->logdirty_cb, "O",
                                                     enable ? Py_True : Py_False));
    self->tstate = PyEval_SaveThread();
    return verdict;
}

static int hook_interrupted(void *opaque)
{
    Checkpointer *self = opaque;
    int verdict = CP_GO;

    PyEval_RestoreThread(self->tstate);
    if (PyErr_CheckSignals() < 0) {
        stash_exception(self);
        verdict = CP_EXCEPTION;
    }
    self->tstate = PyEval_SaveThread();
    return verdict;
}

/* --------------------------------------------------------------- methods */

static int check_idle(Checkpointer *self, const char *what)
{
    if (self->busy) {
        raise_error(what, EBUSY);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(open_doc,
"open(domid)\n\n"
"Attach to a running PV, PVH or HVM domain: control, xenstore and\n"
"event-channel handles, the @releaseDomain watch and, when the guest\n"
"offers one, its suspend event channel (else it is suspended through\n"
"xenstore, or, an HVM guest without PV drivers, with the hypervisor's\n"
"shutdown/suspend; see suspend_path).  An HVM guest whose device model\n"
"runs in a stub domain is refused.");

static PyObject *Checkpointer_open(Checkpointer *self, PyObject *args)
{
    unsigned int domid;
    int rc;

    if (!PyArg_ParseTuple(args, "I:open", &domid))
        return NULL;
    if (check_idle(self, "cannot open() while start() is running"))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = cp_open(&self->cp, domid);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_cp_error(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(probe_doc,
"probe()\n\n"
"Check, before anything is sent, that this hypervisor can track the open\n"
"domain's dirty memory (log-dirty mode: shadow paging for a PV guest,\n"
"HAP for a PVH one): log-dirty mode is switched on and off again, the\n"
"guest keeps running.  Returns None; raises error (errno EOPNOTSUPP for a\n"
"PV guest on a hypervisor built without CONFIG_SHADOW_PAGING) with what\n"
"is missing and what to do.  start() runs it too unless it passed.");

static PyObject *Checkpointer_probe(Checkpointer *self,
                                    PyObject *Py_UNUSED(ignored))
{
    int rc;

    if (check_idle(self, "cannot probe() while start() is running"))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cp_clear_error(&self->cp);
    rc = cp_probe(&self->cp);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_cp_error(self);
    Py_RETURN_NONE;
}

static const char *const callback_names[3] = {
    "suspend callback not callable",
    "postcopy callback not callable",
    "checkpoint callback not callable",
};

PyDoc_STRVAR(start_doc,
"start(iofile, suspend_cb=None, postcopy_cb=None, checkpoint_cb=None,\n"
"      interval=0, flags=0, logdirty_cb=None)\n\n"
"Write a Remus (checkpointed) libxc stream of the domain to iofile until\n"
"checkpoint_cb returns a false value or something fails.  suspend_cb runs\n"
"once the guest is suspended, postcopy_cb before it is resumed,\n"
"checkpoint_cb after the checkpoint is on the fd and the guest runs again\n"
"(with capture, libxc writes the epoch into memory while the guest is\n"
"suspended, and it is sent before checkpoint_cb runs).\n"
"interval > 0 (ms) suspends the guest from a timer.  An HVM guest needs\n"
"logdirty_cb(enable), libxc's switch of the device model's log-dirty\n"
"tracking (on before the first pass, off at the end); its caller saves\n"
"the device model in suspend_cb, resumes it in postcopy_cb and writes\n"
"the emulator records in checkpoint_cb.  Returns None; raises error, or\n"
"re-raises what a callback raised, with the guest running.");

static PyObject *Checkpointer_start(Checkpointer *self, PyObject *args,
                                    PyObject *kwds)
{
    static char *kwlist[] = { "iofile", "suspend_cb", "postcopy_cb",
                              "checkpoint_cb", "interval", "flags",
                              "logdirty_cb", NULL };
    static const struct cp_hooks hooks_template = {
        hook_suspend, hook_postcopy, hook_checkpoint, hook_interrupted, NULL,
        NULL };
    PyObject *iofile, *cbs[3] = { Py_None, Py_None, Py_None };
    PyObject *logdirty = Py_None;
    unsigned int interval = 0, flags = 0;
    struct cp_hooks hooks = hooks_template;
    int fd, rc, i;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOOIIO:start", kwlist,
                                     &iofile, &cbs[0], &cbs[1], &cbs[2],
                                     &interval, &flags, &logdirty))
        return NULL;
    fd = PyObject_AsFileDescriptor(iofile);
    if (fd < 0) {
        PyErr_SetString(PyExc_TypeError, "invalid file handle");
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        if (cbs[i] != Py_None && !PyCallable_Check(cbs[i])) {
            PyErr_SetString(PyExc_TypeError, callback_names[i]);
            return NULL;
        }
    }
    if (logdirty != Py_None && !PyCallable_Check(logdirty)) {
        PyErr_SetString(PyExc_TypeError, "logdirty callback not callable");
        return NULL;
    }
    if (check_idle(self, "checkpointer is already running"))
        return NULL;
    if (!self->cp.opened)
        return raise_error("checkpoint state not opened", 0);

    for (i = 0; i < 3; i++)
        self->callbacks[i] = cbs[i] == Py_None ? NULL : Py_NewRef(cbs[i]);
    if (logdirty != Py_None) {
        self->logdirty_cb = Py_NewRef(logdirty);
        hooks.logdirty = hook_logdirty;
    }
    Py_INCREF(iofile);
    clear_exception(self);
    hooks.opaque = self;
    self->busy = 1;

    self->tstate = PyEval_SaveThread();
    rc = cp_save(&self->cp, fd, interval, flags, &hooks);
    PyEval_RestoreThread(self->tstate);
    self->tstate = NULL;

    self->busy = 0;
    for (i = 0; i < 3; i++)
        Py_CLEAR(self->callbacks[i]);
    Py_CLEAR(self->logdirty_cb);
    Py_DECREF(iofile);
    if (self->exc_type) {
        if (self->cp.has_err)       /* say so, but raise what Python raised */
            fprintf(stderr, "checkpoint: %s\n", self->cp.errstr);
        PyErr_Restore(self->exc_type, self->exc_value, self->exc_tb);
        self->exc_type = self->exc_value = self->exc_tb = NULL;
        return NULL;
    }
    if (rc)
        return raise_cp_error(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(close_doc,
"close()\n\n"
"Resume the domain if it is suspended, then release every handle.");

static PyObject *Checkpointer_close(Checkpointer *self,
                                    PyObject *Py_UNUSED(ignored))
{
    int rc;

    if (check_idle(self, "cannot close() while start() is running"))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    cp_clear_error(&self->cp);
    rc = cp_ensure_running(&self->cp);
    cp_close(&self->cp);
    Py_END_ALLOW_THREADS
    if (rc)
        return raise_cp_error(self);
    Py_RETURN_NONE;
}

static PyMethodDef Checkpointer_methods[] = {
    { "open", (PyCFunction)Checkpointer_open, METH_VARARGS, open_doc },
    { "start", (PyCFunction)(void (*)(void))Checkpointer_start,
      METH_VARARGS | METH_KEYWORDS, start_doc },
    { "close", (PyCFunction)Checkpointer_close, METH_NOARGS, close_doc },
    { "probe", (PyCFunction)Checkpointer_probe, METH_NOARGS, probe_doc },
    { NULL, NULL, 0, NULL },
};

/* ------------------------------------------------------------ attributes */

static PyObject *get_domid(Checkpointer *self, void *closure)
{
    (void)closure;
    if (!self->cp.opened)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->cp.domid);
}

static PyObject *str_or_none(const char *s)
{
    if (!s)
        Py_RETURN_NONE;
    return PyUnicode_FromString(s);
}

static PyObject *get_guest_type(Checkpointer *self, void *closure)
{
    (void)closure;
    return str_or_none(cp_guest_name(&self->cp));
}

static PyObject *get_suspend_path(Checkpointer *self, void *closure)
{
    (void)closure;
    return str_or_none(cp_suspend_path(&self->cp));
}

static PyObject *get_timeout(Checkpointer *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLong(self->cp.suspend_timeout_ms);
}

static int set_timeout(Checkpointer *self, PyObject *value, void *closure)
{
    unsigned long ms;

    (void)closure;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete suspend_timeout");
        return -1;
    }
    ms = PyLong_AsUnsignedLong(value);
    if (PyErr_Occurred())
        return -1;
    if (ms == 0 || ms > 3600000) {
        PyErr_SetString(PyExc_ValueError,
                        "suspend_timeout must be 1..3600000 ms");
        return -1;
    }
    self->cp.suspend_timeout_ms = (unsigned int)ms;
    return 0;
}

static PyObject *get_write_timeout(Checkpointer *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLong(self->cp.write_timeout_ms);
}

static int set_write_timeout(Checkpointer *self, PyObject *value,
                             void *closure)
{
    unsigned long ms;

    (void)closure;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete write_timeout");
        return -1;
    }
    ms = PyLong_AsUnsignedLong(value);
    if (PyErr_Occurred())
        return -1;
    if (ms > 3600000) {
        PyErr_SetString(PyExc_ValueError,
                        "write_timeout must be 0..3600000 ms");
        return -1;
    }
    self->cp.write_timeout_ms = (unsigned int)ms;
    return 0;
}

static PyObject *get_capture(Checkpointer *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->cp.cap.enabled);
}

static int set_capture(Checkpointer *self, PyObject *value, void *closure)
{
    int on;

    (void)closure;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete capture");
        return -1;
    }
    if (check_idle(self, "cannot change capture while start() is running"))
        return -1;
    on = PyObject_IsTrue(value);
    if (on < 0)
        return -1;
    self->cp.cap.enabled = on;
    return 0;
}

static PyObject *get_capture_limit(Checkpointer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->cp.cap.limit);
}

static int set_capture_limit(Checkpointer *self, PyObject *value,
                             void *closure)
{
    size_t bytes;

    (void)closure;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete capture_limit");
        return -1;
    }
    if (check_idle(self, "cannot change capture_limit while start() is "
                   "running"))
        return -1;
    bytes = PyLong_AsSize_t(value);
    if (PyErr_Occurred())
        return -1;
    if (bytes < ((size_t)1 << 20)) {
        PyErr_SetString(PyExc_ValueError,
                        "capture_limit must be at least 1 MiB (1048576)");
        return -1;
    }
    self->cp.cap.limit = bytes;
    return 0;
}

static PyObject *get_capture_stats(Checkpointer *self, void *closure)
{
    (void)closure;
    return Py_BuildValue("{s:n,s:I,s:K}",
                         "peak", (Py_ssize_t)self->cp.cap.peak,
                         "overflows", self->cp.cap.overflows,
                         "captured",
                         (unsigned long long)self->cp.cap.captured);
}

static PyGetSetDef Checkpointer_getset[] = {
    { "domid", (getter)get_domid, NULL,
      "The open domain, or None.", NULL },
    { "guest_type", (getter)get_guest_type, NULL,
      "'pv', 'pvh' or 'hvm' (a device model completes its platform) for\n"
      "the open domain, or None.", NULL },
    { "suspend_path", (getter)get_suspend_path, NULL,
      "How the open domain is suspended: 'evtchn' (its suspend event\n"
      "channel), 'xenstore' (control/shutdown, bounded by\n"
      "suspend_timeout) or 'hypercall' (an HVM guest without PV drivers:\n"
      "xc_domain_shutdown(SHUTDOWN_suspend)); for HVM what the next\n"
      "suspend would use; None when not open.", NULL },
    { "suspend_timeout", (getter)get_timeout, (setter)set_timeout,
      "How long (ms) to wait for the guest to suspend; default 5000.", NULL },
    { "write_timeout", (getter)get_write_timeout,
      (setter)set_write_timeout,
      "The write deadline (ms) of start() on a socket; 0 (the default):\n"
      "none.  No write to the stream may block longer, and an epoch's\n"
      "writes must end within it of the guest's suspension; past it the\n"
      "socket is shut down, the guest resumed and start() raises error\n"
      "with errno ETIMEDOUT.", NULL },
    { "capture", (getter)get_capture, (setter)set_capture,
      "Local capture during the pause (default False, as the legacy\n"
      "module): libxc writes each epoch into memory while the guest is\n"
      "suspended, and it is sent once the guest runs again, before\n"
      "checkpoint_cb; only checkpoint_cb may then write to iofile.  The\n"
      "bytes on iofile are the same, in the same order.", NULL },
    { "capture_limit", (getter)get_capture_limit,
      (setter)set_capture_limit,
      "The most one epoch may hold in memory with capture (bytes, default\n"
      "1 GiB, at least 1 MiB); the rest of a larger epoch is written\n"
      "straight to iofile (a warning, once per start()).", NULL },
    { "capture_stats", (getter)get_capture_stats, NULL,
      "The last start()'s capture: {'peak': the largest epoch held\n"
      "(bytes), 'overflows': epochs that outgrew capture_limit,\n"
      "'captured': bytes that went through memory}.", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

/* ------------------------------------------------------------------ type */

static PyObject *Checkpointer_new(PyTypeObject *type, PyObject *args,
                                  PyObject *kwds)
{
    Checkpointer *self;

    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "checkpointer() takes no arguments");
        return NULL;
    }
    self = (Checkpointer *)type->tp_alloc(type, 0);
    if (self)
        cp_init(&self->cp);
    return (PyObject *)self;
}

/* Deallocation leaves the guest running too (the legacy one did not). */
static void Checkpointer_dealloc(Checkpointer *self)
{
    if (self->cp.opened && cp_ensure_running(&self->cp))
        fprintf(stderr, "checkpoint: %s\n", self->cp.errstr);
    cp_destroy(&self->cp);
    clear_exception(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CheckpointerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xen_remus_compat._checkpoint.checkpointer",
    .tp_basicsize = sizeof(Checkpointer),
    .tp_dealloc = (destructor)Checkpointer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Checkpoint object",
    .tp_methods = Checkpointer_methods,
    .tp_getset = Checkpointer_getset,
    .tp_new = Checkpointer_new,
};

static struct PyModuleDef checkpoint_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "xen_remus_compat._checkpoint",
    .m_doc = "checkpoint API",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__checkpoint(void)
{
    PyObject *m, *dict;

    if (PyType_Ready(&CheckpointerType) < 0)
        return NULL;
    m = PyModule_Create(&checkpoint_module);
    if (!m)
        return NULL;
    dict = Py_BuildValue("{s:O}", "errno", Py_None);
    if (!dict)
        goto fail;
    CheckpointError = PyErr_NewExceptionWithDoc(
        "xen_remus_compat._checkpoint.error",
        "A checkpoint operation failed; .errno is the errno or None.",
        NULL, dict);
    Py_DECREF(dict);
    if (!CheckpointError)
        goto fail;
    if (PyModule_AddObjectRef(m, "error", CheckpointError) < 0 ||
        PyModule_AddObjectRef(m, "checkpointer",
                              (PyObject *)&CheckpointerType) < 0)
        goto fail;
    return m;
 fail:
    Py_DECREF(m);
    return NULL;
}
