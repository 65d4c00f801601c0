"""lessons_lib: the shared library of the skin-lesion segmentation course.

Modules are named after the chapter that introduced them; see ``README.md``.
"""

__version__ = "0.1.0"
