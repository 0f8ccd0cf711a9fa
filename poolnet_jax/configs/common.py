"""Defaults shared by every config; each config file starts from `base()`."""

import ml_collections


def base():
  """Keys every run has. Configs override what their protocol changes."""
  c = ml_collections.ConfigDict()
  # The model (models/spec.py ModelSpec): variant (resnet50, vgg16, resnet50_edge,
  # vgg16_edge), width (channel multiplier), stages (ResNet blocks per stage), resnet_style
  # (caffe, torchvision), compute dtype (float32, bfloat16, float16; parameters stay
  # float32). How it is computed (remat, conv, init) is apart, below.
  c.model = ml_collections.ConfigDict()
  c.model.variant = "resnet50"
  c.model.width = 1.0
  c.model.stages = (3, 4, 6, 3)
  c.model.resnet_style = "caffe"
  c.model.dtype = "float32"
  c.backbone_checkpoint = ""  # resnet50_caffe.pth / vgg16_20M.pth / torchvision state_dict
  c.init_checkpoint = ""  # full PoolNet (.pth or converted directory) to fine-tune from
  c.init = (
    ""  # what no checkpoint sets: "" = the original's N(0, 0.01), "skipinit" (models/init.py)
  )

  c.dataset = "duts"  # TFDS name of the saliency training set
  c.train_split = "train"
  c.eval_dataset = "duts"
  c.eval_split = "test"
  c.eval_max_images = 200  # periodic validation subset; 0 = the whole split
  c.eval_size = ()  # () = native size (the paper); (H, W) = resize, maps resized back
  c.edge_dataset = "bsds_pascal_edges"  # joint (edge) models only
  c.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data_dir
  c.manual_dir = ml_collections.config_dict.placeholder(str)  # user's downloads
  c.data = ml_collections.ConfigDict()
  c.data.mode = "native"  # native (batch 1 per device, the paper), fixed, buckets
  c.data.size = (320, 320)  # fixed mode
  c.data.buckets = ((320, 320), (288, 384), (384, 288))  # buckets mode
  c.data.flip = True
  c.data.worker_count = 0  # grain worker processes (0: decode in this process's threads)
  c.data.read_threads = 1  # grain ReadOptions.num_threads
  c.data.prefetch = 2  # batches grain makes ahead (ReadOptions.prefetch_buffer_size)
  c.data.prefetch_to_device = 2  # batches on the devices ahead of the step
  # native mode: round each image's size to a multiple of this (0: exact, the paper), so an
  # epoch has far fewer shapes to compile (BENCHMARKS.md "Step shapes"); sides change <= M/2 px
  c.data.native_multiple = 0
  # > 0 (with native_multiple): few multiples chosen for the whole dataset instead, each side
  # within this relative change of the image's own (data/train_sizes.py); 0: nearest multiple
  c.data.native_max_rescale = 0.0
  # Compile every step shape of an epoch before its first update (train/warmup.py): "auto"
  # (native/buckets modes on GPU/TPU), "true", "false"; compile_workers 0: 1 on CPU, else 4.
  c.compile_ahead = "auto"
  c.compile_workers = 0

  c.batch_size = 1  # global, over all devices and hosts
  c.iter_size = 10  # gradient accumulation (calls per update), as the original
  c.learning_rate = 5e-5
  c.weight_decay = 5e-4
  c.num_epochs = 24  # converted to updates from the training set's size
  c.num_train_steps = -1  # updates; overrides num_epochs when > 0
  c.epoch_images = 0  # images per epoch; 0 = the training set's size
  c.lr_decay_epochs = (15,)  # learning rate / 10 after these epochs
  c.lr_decay_steps = ()  # or after these updates (overrides lr_decay_epochs)
  c.lr_schedule = "step"  # step (the paper's) or cosine (to lr_end_factor * learning_rate)
  c.lr_end_factor = 0.0  # cosine only
  c.warmup_steps = 0  # linear warmup from 0, either schedule
  c.reset_optimizer_at_decay = True  # the original rebuilds Adam there
  c.clip_grad_norm = 0.0  # > 0: clip the global gradient norm (off in the paper)
  c.parallel = "pmap"  # pmap, shard_map or jit (jax.jit with NamedSharding)
  c.remat = False  # recompute ResNet bottlenecks, VGG blocks and FAMs in the backward pass
  c.conv = ""  # "" = the backend's default ("fast" on CPU: Winograd + resize_conv), fast, xla
  c.resize_conv = ml_collections.config_dict.placeholder(bool)  # None: as `conv`
  # Matmul/convolution precision: "default" lets GPUs use TF32 and TPUs bf16 passes for
  # float32; "highest" is true float32 (the converter's parity). jax.default_matmul_precision.
  c.matmul_precision = "default"
  c.seed = 0

  # (first, last): jax.profiler traces these updates into tensorboard/plugins/profile
  # (TensorBoard's profile tab with `pip install xprof`, or ui.perfetto.dev); () = off
  c.profile_steps = ()
  c.log_every_steps = 50
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  return c
