"""Tasks, readers and batching (the batching loads on first use: it imports torch)."""

from ..lazy import lazy_exports
from .config import DataConfig
from .readers import DataError, read_glue_split, read_hub_dataset, read_table
from .tasks import GLUE_TASKS, Task, TaskError, custom_task, get_task

__all__ = [
    "GLUE_TASKS",
    "DataConfig",
    "DataError",
    "Task",
    "TaskData",
    "TaskError",
    "custom_task",
    "get_task",
    "load_task_data",
    "read_glue_split",
    "read_hub_dataset",
    "read_table",
]

__getattr__ = lazy_exports(__name__, {"TaskData": ".loading", "load_task_data": ".loading"})
