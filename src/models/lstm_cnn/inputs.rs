//! A table's standardised rows on the device, and windows gathered from them.

use tch::{Device, Tensor};

use super::Windows;
use crate::models::sequences::ScaledRows;

/// [`ScaledRows`] on the device: the stored values, and each row's service with the services'
/// standardised one-hot vectors.
pub(super) struct Inputs {
    values: Tensor,
    one_hot: Option<(Tensor, Tensor)>,
}

impl Inputs {
    pub(super) fn new(x: &ScaledRows, device: Device) -> Inputs {
        let values = Tensor::from_slice(&x.values).view([x.rows as i64, x.stored as i64]).to(device);
        let one_hot = (x.features > x.stored).then(|| {
            let width = (x.features - x.stored) as i64;
            (Tensor::from_slice(&x.services).to(device), Tensor::from_slice(&x.one_hot).view([-1, width]).to(device))
        });
        Inputs { values, one_hot }
    }

    /// The windows `rows` `[b, steps]` index: `[b, steps, features]`.
    pub(super) fn gather(&self, rows: &Tensor) -> Tensor {
        let (b, steps) = (rows.size()[0], rows.size()[1]);
        let flat = rows.reshape([-1]);
        let mut x = self.values.index_select(0, &flat);
        if let Some((services, one_hot)) = &self.one_hot {
            x = Tensor::cat(&[x, one_hot.index_select(0, &services.index_select(0, &flat))], 1);
        }
        x.view([b, steps, -1])
    }
}

/// Windows' row indices `[n, steps]` and targets, on the device.
pub(super) fn to_device(w: &Windows, steps: i64, device: Device) -> (Tensor, Tensor) {
    (Tensor::from_slice(w.rows).view([w.len() as i64, steps]).to(device), Tensor::from_slice(w.y).to(device))
}
