//! Arithmetic on a pipeline's params, inside `${…}`: `${ceil(pod_startup_seconds / row_seconds)}`.
//!
//! One fact is told once (a pod's start-up, in seconds) and each stage reads it in its own unit
//! (rows of a window frame, seconds of the replay). Numbers, param names, `+ - * /`, parentheses
//! and `ceil`, `floor`, `round`; every value is a float (so `7 / 2` is 3.5, not 3), and a whole
//! result is written as an integer, as a SQL `ROWS` frame needs. Hand-written rather than an
//! expression crate's: those bring a language of their own (integer division, `math::ceil`)
//! that a pipeline author would have to learn for one line.

use indexmap::IndexMap;
use serde_json::Value;

/// What is wrong with an expression, for the message that names its stage and field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`${{{expr}}}`: {problem}")]
pub struct ExprError {
    pub expr: String,
    pub problem: String,
}

/// The value of `expr` with `params`: a JSON integer when it is whole, else a number.
pub fn evaluate(expr: &str, params: &IndexMap<String, Value>) -> Result<Value, ExprError> {
    let fail = |problem: String| ExprError { expr: expr.to_string(), problem };
    let mut p = Parser { s: expr.as_bytes(), at: 0, params };
    let v = p.sum().map_err(fail)?;
    p.space();
    if p.at < p.s.len() {
        return Err(fail(format!("unexpected `{}` at character {}", &expr[p.at..], p.at + 1)));
    }
    if !v.is_finite() {
        return Err(fail(format!("is {v} (a division by zero?)")));
    }
    Ok(if v.fract() == 0.0 && v.abs() < 9.0e15 { Value::from(v as i64) } else { Value::from(v) })
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    params: &'a IndexMap<String, Value>,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.space();
        let hit = self.s.get(self.at) == Some(&c);
        self.at += usize::from(hit);
        hit
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        loop {
            if self.eat(b'+') {
                v += self.product()?;
            } else if self.eat(b'-') {
                v -= self.product()?;
            } else {
                return Ok(v);
            }
        }
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.factor()?;
        loop {
            if self.eat(b'*') {
                v *= self.factor()?;
            } else if self.eat(b'/') {
                v /= self.factor()?;
            } else {
                return Ok(v);
            }
        }
    }

    fn factor(&mut self) -> Result<f64, String> {
        if self.eat(b'-') {
            return Ok(-self.factor()?);
        }
        if self.eat(b'(') {
            let v = self.sum()?;
            return if self.eat(b')') { Ok(v) } else { Err("a `(` is not closed".into()) };
        }
        self.space();
        let start = self.at;
        let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.';
        while self.s.get(self.at).is_some_and(word) {
            self.at += 1;
        }
        let token = std::str::from_utf8(&self.s[start..self.at]).expect("ASCII");
        if token.is_empty() {
            return Err(format!("expected a number, a param or `(` at character {}", start + 1));
        }
        if token.as_bytes()[0].is_ascii_digit() || token.starts_with('.') {
            return token.parse().map_err(|_| format!("`{token}` is not a number"));
        }
        if self.eat(b'(') {
            let v = self.sum()?;
            if !self.eat(b')') {
                return Err(format!("`{token}(` is not closed"));
            }
            return match token {
                "ceil" => Ok(v.ceil()),
                "floor" => Ok(v.floor()),
                "round" => Ok(v.round()),
                _ => Err(format!("`{token}` is not a function (there are ceil, floor and round)")),
            };
        }
        match self.params.get(token) {
            Some(Value::Number(n)) => Ok(n.as_f64().expect("a JSON number")),
            Some(other) => Err(format!("the param `{token}` is {other}, not a number")),
            None => Err(format!(
                "refers to no param `{token}` (declared params: {})",
                if self.params.is_empty() { "none".to_string() } else { self.params.keys().cloned().collect::<Vec<_>>().join(", ") }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> IndexMap<String, Value> {
        [("pod_startup_seconds", Value::from(180)), ("row_seconds", Value::from(30.0)), ("name", Value::from("x"))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn a_start_up_in_seconds_becomes_rows() {
        let p = params();
        assert_eq!(evaluate("ceil(pod_startup_seconds / row_seconds)", &p), Ok(Value::from(6)));
        assert_eq!(evaluate(" ceil( 45 / row_seconds ) + 4 ", &p), Ok(Value::from(6)));
        assert_eq!(evaluate("floor(45 / row_seconds)", &p), Ok(Value::from(1)));
        // Floats throughout, precedence as in arithmetic, unary minus.
        assert_eq!(evaluate("7 / 2", &p), Ok(Value::from(3.5)));
        assert_eq!(evaluate("1 + 2 * 3 - -(4 - 1)", &p), Ok(Value::from(10)));
        assert_eq!(evaluate("round(2.5) + 0.25", &p), Ok(Value::from(3.25)));
    }

    #[test]
    fn a_bad_expression_says_what_is_wrong() {
        let p = params();
        let problem = |e: &str| evaluate(e, &p).unwrap_err().problem;
        assert!(problem("ceil(pod_startup / 30)").contains("no param `pod_startup`"), "{}", problem("ceil(pod_startup / 30)"));
        assert!(problem("name + 1").contains("is \"x\", not a number"));
        assert!(problem("sqrt(4)").contains("not a function"));
        assert!(problem("(1 + 2").contains("not closed"));
        assert!(problem("1 +").contains("expected a number"));
        assert!(problem("1 2").contains("unexpected `2`"));
        assert!(problem("1 / 0").contains("division by zero"));
        assert_eq!(evaluate("1 / 0", &p).unwrap_err().to_string(), "`${1 / 0}`: is inf (a division by zero?)");
    }
}
