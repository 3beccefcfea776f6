"""The run process: one benchmark run in this process (`harness.execute`), its training
loop and timing, its process group (`distributed`), what it prints (`console`), and
torchrun started for `gan-bench run --nproc N` (`launcher`)."""
