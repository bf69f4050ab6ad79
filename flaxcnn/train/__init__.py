"""Training: the state, the pure step functions, and the loop of periodic actions.

    launch -> config -> task -> data feeds -> train (state, steps, loop) -> checkpoint/metrics

- `state.py`    TrainState, Run (the static description of a run), setup, create,
                restore, the resume checks
- `steps.py`    the jitted update, in-memory and streamed training steps, evaluation
- `loop.py`     train_and_evaluate: a step, then the periodic actions that are due
                (log, evaluate, plateau, checkpoint), stages, profiling, signals;
                evaluate_checkpoint
- `stages.py`   progressive learning (EfficientNetV2): a Run per stage
- `finetune.py` init_from (a run or imported weights), head-only phase, frozen paths

The task (flaxcnn/tasks/) says what the data, augmentation, loss and evaluation are;
the feeds (flaxcnn/data/feeds.py) what each step receives.
"""
from flaxcnn.data.feeds import InMemoryFeed, StreamingFeed, eval_image_size, make_feed  # noqa: F401
from flaxcnn.parallel import global_array, make_mesh, padded_batches  # noqa: F401
from flaxcnn.train.finetune import finetune_masks, load_initial_weights  # noqa: F401
from flaxcnn.train.loop import NonFiniteLoss, evaluate_checkpoint, train_and_evaluate  # noqa: F401
from flaxcnn.train.stages import stage_plan, stage_run  # noqa: F401
from flaxcnn.train.state import (RESUME_FIXED, Run, TrainState, check_resume,  # noqa: F401
                                 create_state, init_variables, load_state, setup)
from flaxcnn.train.steps import (compiler_options, evaluate, make_batch_train_step,  # noqa: F401
                                 make_eval_step, make_train_step, update)
