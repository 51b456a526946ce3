"""What every command shares: a quiet start, --help that lists the flags the
command reads, and errors as one line.

- Quiet start: TensorFlow's C++ start-up lines (oneDNN, CPU features,
  absl::InitializeLog) are printed while `import tensorflow` runs, and
  TF_CPP_MIN_LOG_LEVEL no longer reaches them (TF >= 2.19). When the process
  is one of the package's commands (`python -m yt8m_segments.<command>` or a
  `yt8m-*` console script) the package's __init__ imports TensorFlow with
  stderr pointed at /dev/null, and sets TF_CPP_MIN_LOG_LEVEL=2 for the rest.
  `--tf_logs` or YT8M_TF_LOGS=1 keeps them. Progress (absl INFO lines and
  Keras progress bars) is untouched.
- Recipes: `--recipe=NAME` (a flagfile shipped in yt8m_segments/recipes,
  `NAME.flags`) or `--recipe=PATH` is `--flagfile=` that file, so the
  recipes work from a wheel install as from a clone (where `flags/` links
  to them).
- Help: `--help` (or -h, --helpshort) prints the command's docstring and
  every flag it reads, grouped: the command's own, then the shared groups
  of flag_defs.GROUPS, then these command-line ones, each with its default.
  `--helpfull` keeps absl's listing, TensorFlow's and absl's flags included.
- Errors (`run`): a usage error (a bad flag or value included) prints
  `error: <message>` and a hint to --help, exit 2; an input or runtime error (ValueError, OSError,
  RuntimeError, TensorFlow's OpError) prints `error: <message>`, exit 1.
  `--verbosity=1` or YT8M_TRACEBACK=1 shows the traceback instead. --help
  exits 0.
"""

import contextlib
import importlib
import io
import logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging

TF_LOGS_ENV = "YT8M_TF_LOGS"
TRACEBACK_ENV = "YT8M_TRACEBACK"
TF_LOGS_FLAG = "--tf_logs"
PACKAGE = __name__.rsplit(".", 1)[0]
RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")
RECIPE_FLAG = "--recipe"
HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
GROUPED_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")
HELP_WIDTH = 80

# Read from sys.argv before parsing (the lines come at import); defined so
# that absl accepts it and --help lists it.
flags.DEFINE_bool(TF_LOGS_FLAG[2:], False,
                  f"Keep TensorFlow's C++ start-up lines (also {TF_LOGS_ENV}=1).")
flags.DEFINE_multi_string(
    RECIPE_FLAG[2:], [], "A shipped recipe by name (demo, p4_nextvlad, ...: "
    "yt8m_segments/recipes/NAME.flags) or a flagfile path; read as "
    "--flagfile, in place. Repeatable.")


def recipe_names():
    """The shipped recipes, sorted."""
    return sorted(name[:-len(".flags")] for name in os.listdir(RECIPES_DIR)
                  if name.endswith(".flags"))


def recipe_path(recipe):
    """The flagfile of `--recipe=recipe`: a shipped name or a path."""
    if os.path.isfile(recipe):
        return recipe
    path = os.path.join(RECIPES_DIR, f"{recipe}.flags")
    if os.sep in recipe or not os.path.exists(path):
        raise app.UsageError(f"no recipe '{recipe}': give a flagfile path or one "
                             f"of {', '.join(recipe_names())}")
    return path


def expand_recipes(argv):
    """argv with each `--recipe=R` (or `--recipe R`) as `--flagfile=<path>`."""
    expanded, args = [], iter(argv)
    for arg in args:
        if arg == RECIPE_FLAG:
            arg = f"{RECIPE_FLAG}={next(args, '')}"
        if arg.startswith(RECIPE_FLAG + "="):
            arg = "--flagfile=" + recipe_path(arg.split("=", 1)[1])
        expanded.append(arg)
    return expanded


def is_command():
    """Whether this process runs one of the package's commands."""
    argv = getattr(sys, "orig_argv", sys.argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1].split(".")[0] == PACKAGE
    return os.path.basename(sys.argv[0]).startswith("yt8m-")


def _wants_tf_logs():
    if os.environ.get(TF_LOGS_ENV) == "1":
        return True
    return any(arg in (TF_LOGS_FLAG, TF_LOGS_FLAG + "=true", TF_LOGS_FLAG + "=1")
               for arg in sys.argv[1:])


def quiet_start():
    """Import TensorFlow without its start-up lines (see the module
    docstring); a no-op outside a command, with --tf_logs, or once
    TensorFlow is imported. An import that fails still shows its error:
    stderr is restored before the exception leaves."""
    if not is_command() or _wants_tf_logs() or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        importlib.import_module("tensorflow")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _show_traceback():
    if os.environ.get(TRACEBACK_ENV) == "1":
        return True
    return flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].value >= 1


def _runtime_errors():
    errors = (ValueError, OSError, RuntimeError)
    if "tensorflow" in sys.modules:
        errors += (sys.modules["tensorflow"].errors.OpError,)
    return errors


_TF_WRAPPING = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]"
                          r"(?:\s*name:\s*\S*)?\s*$")


def one_line(error):
    """An exception's message on one line (TensorFlow's OpError: its
    message, without the op's traceback and its function/op wrapping)."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(_TF_WRAPPING.sub("", message).split())


def _fail(error, code, hint=""):
    if _show_traceback():
        raise error
    print(f"error: {one_line(error)}{hint}", file=sys.stderr)
    sys.exit(code)


def _help_hint():
    return f"\n(see {os.path.basename(sys.argv[0])} --help)"


def guarded(main):
    """`main` with the errors of the module docstring: a usage error or an
    input/runtime error prints one line and exits 2 or 1."""

    def call(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            _fail(error, 2, _help_hint())
        except _runtime_errors() as error:
            _fail(error, 1)
    return call


def flags_parser(unknown_flag_hint=""):
    """absl's flags_parser for app.run: an unknown flag or a bad value is a
    usage error (one line, exit 2), not absl's FATAL line and exit 1.
    `unknown_flag_hint` is added to an unknown flag's message."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            message = str(error)
            if unknown_flag_hint and isinstance(error, flags.UnrecognizedFlagError):
                message += f" ({unknown_flag_hint})"
            _fail(app.UsageError(message), 2, _help_hint())
    return parse


def _expanded(program, args):
    """[program, *args] with recipes expanded; an unknown recipe exits 2."""
    try:
        return expand_recipes([program, *args])
    except app.UsageError as error:
        _fail(error, 2, _help_hint())


@contextlib.contextmanager
def captured_output():
    """Yields (stdout, stderr) StringIOs holding what the block prints and
    logs (absl's lines go to stderr): a command run in process, read back."""
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    absl_logger = absl_logging.get_absl_logger()
    absl_logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield stdout, stderr
    finally:
        absl_logger.removeHandler(handler)


def run_in_process(module_name, args):
    """Run the command `module_name` (say yt8m_segments.train) on `args` in
    this process, as `python -m module_name args` would, without a new
    TensorFlow start-up: recipes expanded, flags parsed (a bad one exits 2),
    main under `guarded` (errors exit as in a process: SystemExit). The flags
    go back to their defaults and Keras' state is cleared afterwards, so the
    next command starts as fresh as in its own process."""
    import keras  # pylint: disable=import-outside-toplevel
    module = importlib.import_module(module_name)
    try:
        argv = flags_parser()(_expanded(module_name, args))
        if not flags.FLAGS["verbosity"].present:  # progress, as in a process
            absl_logging.set_verbosity(absl_logging.INFO)
        return guarded(module.main)(argv)
    finally:
        flags.FLAGS.unparse_flags()
        keras.backend.clear_session()


def _render_flag(flag):
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    lines = [flags.text_wrap(f"{name}: {flag.help}", HELP_WIDTH, "    ", "  ")]
    if flag.default is not None and flag.default != []:
        default = flag.default
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        lines.append(f"    (default: {str(default).lower() if flag.boolean else default!r})")
    return lines


def help_text(module_name):
    """The command's docstring and its flags, grouped (module docstring)."""
    from yt8m_segments import flag_defs  # pylint: disable=import-outside-toplevel
    module = sys.modules[module_name]
    values = flags.FLAGS
    key = {flag.name: flag for flag in values.get_key_flags_for_module(module_name)}
    command = os.path.basename(sys.argv[0])
    own = {flag.name for flag in values.get_flags_for_module(module_name)}
    groups = [(f"{command} flags", [n for n in key if n in own])]
    groups += [(title, [n for n in names if n in key])
               for title, names in flag_defs.GROUPS]
    groups.append(("command-line flags", [
        flag.name for flag in values.get_flags_for_module(__name__)]))
    listed = {n for _, names in groups for n in names}
    groups.append(("other flags", [n for n in key if n not in listed]))
    lines = [(module.__doc__ or "").strip(), ""]
    for title, names in groups:
        if names:
            lines += [f"{title}:"]
            for name in sorted(names):
                lines += _render_flag(key[name])
            lines.append("")
    lines.append("--helpfull lists absl's and TensorFlow's flags too.")
    return "\n".join(lines)


def run(main, unknown_flag_hint=""):
    """absl's app.run(main) with the help and errors of the module
    docstring (`unknown_flag_hint`: see flags_parser). A command lists its
    shared flags in --help with flags.adopt_module_key_flags(module) at its
    top level (absl keys them to the calling module), cli's own among
    them."""
    if any(arg in GROUPED_HELP_FLAGS for arg in sys.argv[1:]):
        print(help_text(main.__module__))
        sys.exit(0)
    argv = _expanded(sys.argv[0], sys.argv[1:])
    try:
        app.run(guarded(main), argv=argv,
                flags_parser=flags_parser(unknown_flag_hint))
    except SystemExit as done:
        # absl exits 1 after printing the help it was asked for.
        if done.code == 1 and any(arg in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise
