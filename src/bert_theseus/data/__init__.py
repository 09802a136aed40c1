"""Tasks, readers and batching."""

from .loading import TaskData, load_task_data
from .readers import DataError, read_glue_split, read_hub_dataset, read_table
from .tasks import GLUE_TASKS, Task, TaskError, custom_task, get_task

__all__ = [
    "GLUE_TASKS",
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
