//! Threshold expressions: a number, or arithmetic over site parameters, e.g.
//! `site.warning_level_m - 0.5` or `0.8 * site.capacity`. Parsed once, evaluated per site at
//! load time, so the engine only ever compares against plain numbers.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    /// `site.<name>`
    Param(String),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

/// A parse error with the 0-based character offset where it happened.
#[derive(Debug, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub msg: String,
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let mut p = Parser {
            s: src.as_bytes(),
            i: 0,
        };
        let e = p.expr()?;
        p.ws();
        if p.i < p.s.len() {
            return Err(p.error(format!("unexpected `{}`", &src[p.i..])));
        }
        Ok(e)
    }

    /// Site parameters the expression uses.
    pub fn params(&self, out: &mut Vec<String>) {
        match self {
            Expr::Num(_) => {}
            Expr::Param(p) => out.push(p.clone()),
            Expr::Neg(e) => e.params(out),
            Expr::Bin(a, _, b) => {
                a.params(out);
                b.params(out);
            }
        }
    }

    /// Evaluate with one site's parameters. Errors name the missing parameter.
    pub fn eval(&self, params: &BTreeMap<String, f64>) -> Result<f64, String> {
        Ok(match self {
            Expr::Num(v) => *v,
            Expr::Param(p) => *params
                .get(p)
                .ok_or_else(|| format!("site parameter `{p}` is not set"))?,
            Expr::Neg(e) => -e.eval(params)?,
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(params)?, b.eval(params)?);
                match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div => {
                        if b == 0.0 {
                            return Err("division by zero".into());
                        }
                        a / b
                    }
                }
            }
        })
    }

    pub fn as_const(&self) -> Option<f64> {
        match self {
            Expr::Num(v) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(v) => write!(f, "{v}"),
            Expr::Param(p) => write!(f, "site.{p}"),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Bin(a, op, b) => {
                let o = match op {
                    Op::Add => "+",
                    Op::Sub => "-",
                    Op::Mul => "*",
                    Op::Div => "/",
                };
                write!(f, "({a} {o} {b})")
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn error(&self, msg: String) -> ExprError {
        ExprError {
            offset: self.i,
            msg,
        }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let rhs = self.term()?;
            let op = if c == b'+' { Op::Add } else { Op::Sub };
            lhs = Expr::Bin(Box::new(lhs), op, Box::new(rhs));
        }
        Ok(lhs)
    }
    fn term(&mut self) -> Result<Expr, ExprError> {
        let mut lhs = self.factor()?;
        while let Some(c @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let rhs = self.factor()?;
            let op = if c == b'*' { Op::Mul } else { Op::Div };
            lhs = Expr::Bin(Box::new(lhs), op, Box::new(rhs));
        }
        Ok(lhs)
    }
    fn factor(&mut self) -> Result<Expr, ExprError> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Ok(Expr::Neg(Box::new(self.factor()?)))
            }
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                if self.peek() != Some(b')') {
                    return Err(self.error("expected `)`".into()));
                }
                self.i += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit()
                        || matches!(self.s[self.i], b'.' | b'e' | b'E'))
                {
                    self.i += 1;
                }
                let txt = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                txt.parse::<f64>().map(Expr::Num).map_err(|_| ExprError {
                    offset: start,
                    msg: format!("bad number `{txt}`"),
                })
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'_' | b'.'))
                {
                    self.i += 1;
                }
                let txt = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match txt.strip_prefix("site.") {
                    Some(p) if !p.is_empty() && !p.contains('.') => Ok(Expr::Param(p.to_string())),
                    _ => Err(ExprError {
                        offset: start,
                        msg: format!(
                            "unknown name `{txt}`: thresholds may use numbers and site parameters such as `site.capacity`"
                        ),
                    }),
                }
            }
            Some(c) => Err(self.error(format!("unexpected `{}`", c as char))),
            None => Err(self.error("expression ends too early".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_over_site_parameters() {
        let mut p = BTreeMap::new();
        p.insert("warning_level_m".to_string(), 112.5);
        p.insert("capacity".to_string(), 20000.0);
        let e = Expr::parse("site.warning_level_m - 0.5").unwrap();
        assert_eq!(e.eval(&p), Ok(112.0));
        assert_eq!(
            Expr::parse("0.8 * site.capacity").unwrap().eval(&p),
            Ok(16000.0)
        );
        assert_eq!(Expr::parse("-(1 + 2) * 3").unwrap().eval(&p), Ok(-9.0));
        assert_eq!(Expr::parse("150").unwrap().as_const(), Some(150.0));
        assert!(Expr::parse("site.flood_limit_m")
            .unwrap()
            .eval(&p)
            .unwrap_err()
            .contains("flood_limit_m"));
    }

    #[test]
    fn parse_errors_have_offsets() {
        let e = Expr::parse("0.8 * capacity").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(Expr::parse("1 +").is_err());
        assert!(Expr::parse("(1 + 2").is_err());
        assert_eq!(Expr::parse("1 2").unwrap_err().offset, 2);
    }
}
