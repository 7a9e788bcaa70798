"""Training: optimizer and schedules (`optimizer`), strategy and precision
(`strategy`), the trainer (`trainer.train`: compile, fit, resume), callbacks
(`callbacks`) and the run folder's layout, lock and resume checks (`run_folder`)."""
