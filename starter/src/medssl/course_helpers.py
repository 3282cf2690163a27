# temporary: notebooks/ still import this; removed when the notebooks are rebuilt
from .course.notebook import *  # noqa: F403
