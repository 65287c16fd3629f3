//! Reviews as the API shows them: the stored review with its status as of now and its link. Only
//! the requester and those who may decide a review read its statement exactly; anyone else with a
//! token gets it masked like a recording.

use serde_json::{Value, json};
use sluice_approvals::Approvals;
use sluice_core::Identity;
use sluice_core::review::{Review, Subject};

#[derive(Clone, Copy)]
pub struct Now(i64);

impl Now {
    pub fn get() -> Now {
        Now(sluice_core::audit::now_us())
    }
}

pub fn review_view(approvals: &Approvals, caller: &Identity, review: &Review, now: Now) -> Value {
    let mut view = json!(review);
    if let Subject::Statement { text, .. } = &review.subject
        && caller.name != review.requester
        && review.may_decide(caller).is_err()
    {
        view["subject"]["text"] = json!(approvals.masked(text));
    }
    view["status"] = json!(review.status_at(now.0));
    view["url"] = json!(approvals.review_url(review.id));
    view
}
