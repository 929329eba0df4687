"""The Lightning side: one LightningModule per stage, callbacks, model builders from configs."""
