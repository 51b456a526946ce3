"""BUILD names exactly the modules and tests in the tree, and only real files."""

import collections
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_build_targets():
    """Evaluate BUILD (Starlark is Python-shaped) with recording rule stubs."""
    targets = collections.defaultdict(dict)

    def rule(kind):
        def record(name, **kwargs):
            assert name not in targets[kind], f"duplicate {kind} {name}"
            targets[kind][name] = kwargs
        return record

    namespace = {kind: rule(kind) for kind in ("py_library", "py_binary",
                                               "py_test")}
    namespace["package"] = lambda **kwargs: None
    namespace["glob"] = lambda patterns: sorted(
        path for pattern in patterns for path in tree(pattern))
    with open(os.path.join(ROOT, "BUILD")) as handle:
        exec(compile(handle.read(), "BUILD", "exec"), namespace)  # noqa: S102
    return targets


def tree(pattern):
    return {os.path.relpath(p, ROOT)
            for p in glob.glob(os.path.join(ROOT, pattern), recursive=True)}


def test_library_lists_every_module():
    library = load_build_targets()["py_library"]["yt8m_segments"]
    assert set(library["srcs"]) == tree("yt8m_segments/**/*.py")


def test_every_test_file_has_a_target_and_support_is_listed():
    targets = load_build_targets()
    listed = {src for t in targets["py_test"].values() for src in t["srcs"]}
    assert listed == tree("tests/**/test_*.py")
    support = set(targets["py_library"]["test_support"]["srcs"])
    assert support == tree("tests/**/*.py") - tree("tests/**/test_*.py")


def test_the_library_carries_the_recipes():
    library = load_build_targets()["py_library"]["yt8m_segments"]
    assert "yt8m_segments/recipes/demo.flags" in library["data"]
    assert set(library["data"]) == tree("yt8m_segments/recipes/*.flags")


def test_binaries_are_runnable_modules():
    for name, target in load_build_targets()["py_binary"].items():
        main = os.path.join(ROOT, target["main"])
        assert os.path.exists(main), name
        with open(main) as handle:
            assert 'if __name__ == "__main__":' in handle.read(), name
