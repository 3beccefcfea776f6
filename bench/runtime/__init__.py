"""The run process: one benchmark run in this process (`harness.execute`), its training
loop and timing, its process group (`distributed`), what it prints (`console`), and
torchrun started for `gan-bench run --nproc N` (`launcher`), and SLURM jobs: their options,
shapes and node command (`slurm`), submitted, watched and recorded (`slurm_queue`); the
stop signals noted while children or jobs are watched (`signals`)."""
