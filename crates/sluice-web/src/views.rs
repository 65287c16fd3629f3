//! Reviews as the API shows them: the stored review with its status as of now and its link.

use serde_json::{Value, json};
use sluice_approvals::Approvals;
use sluice_core::review::Review;

#[derive(Clone, Copy)]
pub struct Now(i64);

impl Now {
    pub fn get() -> Now {
        Now(sluice_core::audit::now_us())
    }
}

pub fn review_view(approvals: &Approvals, review: &Review, now: Now) -> Value {
    let mut view = json!(review);
    view["status"] = json!(review.status_at(now.0));
    view["url"] = json!(approvals.review_url(review.id));
    view
}
