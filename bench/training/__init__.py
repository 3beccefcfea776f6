"""What one training iteration is: the GAN step (discriminator and generator updates, the
optimizers, the latents) and the numeric precision it runs in. Nothing here knows of
speed-ups, devices chosen, processes or timing."""
