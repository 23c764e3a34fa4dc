"""The reference recipe's LightningModule (the Udemy/torchio liver notebook's `Segmenter`):
it wraps the U-Net as `self.model` and adds the recipe's optimiser and weighted loss. Only
what shapes the checkpoint matters here: the attribute names (parameters are saved as
"model.layer1.step.0.weight", ...; the loss's class weights as the buffer "loss_fn.weight")
and Lightning's own checkpoint format. Used by check_seed_import.py."""
import torch

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl

from unet_reference import UNet


class Segmenter(pl.LightningModule):
    def __init__(self, filters=(32, 64, 128, 256)):
        super().__init__()
        self.model = UNet(filters=filters)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 3.0]))

    def forward(self, data):
        return self.model(data)

    def training_step(self, batch, batch_idx):
        img, mask = batch
        loss = self.loss_fn(self(img), mask.long())
        self.log("Train Loss", loss)
        return loss

    def configure_optimizers(self):
        return [self.optimizer]
