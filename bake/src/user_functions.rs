//! `function "NAME" { params = [a, b]  variadic_params = rest  result = … }`
//! blocks: functions a bake file defines for itself.
//!
//! hcl-rs calls functions through plain `fn` pointers (no closures), so
//! a user function is declared as one of [`SLOTS`] trampolines; slot `i`
//! evaluates the `i`th user function's `result` with its parameters bound,
//! reading the definitions from a thread-local [`Scope`] that evaluation
//! installs (and removes) around its work. Evaluation runs on one thread,
//! so the scope is the one of the evaluation calling the function.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use hcl::Value;
use hcl::eval::{Context, Evaluate as _, FuncArgs, FuncDef, ParamType};

use crate::functions;

/// A user function, checked.
#[derive(Debug, Clone)]
pub(crate) struct UserFunc {
    pub name: String,
    pub params: Vec<String>,
    pub variadic: Option<String>,
    pub result: hcl::Expression,
}

/// How many user functions a bake file may define.
pub(crate) const SLOTS: usize = 32;

/// Calls nested deeper than this are taken for endless recursion.
const MAX_DEPTH: usize = 64;

/// What the trampolines read: the functions and the variables in scope.
struct Scope {
    funcs: Vec<UserFunc>,
    vars: BTreeMap<String, Value>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Installs `funcs` for evaluations on this thread until dropped.
pub(crate) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        SCOPE.with(|s| *s.borrow_mut() = None);
    }
}

pub(crate) fn install(funcs: Vec<UserFunc>) -> Installed {
    SCOPE.with(|s| {
        *s.borrow_mut() = Some(Scope {
            funcs,
            vars: BTreeMap::new(),
        })
    });
    Installed
}

/// The variables user functions see (the bake file's, as evaluated so far).
pub(crate) fn set_vars(vars: &BTreeMap<String, Value>) {
    SCOPE.with(|s| {
        if let Some(scope) = s.borrow_mut().as_mut() {
            scope.vars = vars.clone();
        }
    });
}

/// Declares the installed user functions in `ctx`.
pub(crate) fn declare(ctx: &mut Context<'_>) {
    SCOPE.with(|s| {
        if let Some(scope) = s.borrow().as_ref() {
            for (i, f) in scope.funcs.iter().enumerate().take(SLOTS) {
                let mut def = FuncDef::builder().params(vec![ParamType::Any; f.params.len()]);
                if f.variadic.is_some() {
                    def = def.variadic_param(ParamType::Any);
                }
                ctx.declare_func(f.name.as_str(), def.build(TRAMPOLINES[i]));
            }
        }
    });
}

fn call(slot: usize, args: FuncArgs) -> Result<Value, String> {
    let depth = DEPTH.with(|d| d.get());
    if depth >= MAX_DEPTH {
        return Err("function calls nest too deep (a function calling itself?)".to_string());
    }
    DEPTH.with(|d| d.set(depth + 1));
    let result = SCOPE.with(|s| {
        let scope = s.borrow();
        let scope = scope
            .as_ref()
            .ok_or_else(|| "user functions are not available here".to_string())?;
        let f = &scope.funcs[slot];
        let mut ctx = Context::new();
        functions::declare_all(&mut ctx);
        for (k, v) in &scope.vars {
            ctx.declare_var(k.as_str(), v.clone());
        }
        let values = args.into_values();
        let (positional, rest) = values.split_at(f.params.len().min(values.len()));
        for (name, v) in f.params.iter().zip(positional) {
            ctx.declare_var(name.as_str(), v.clone());
        }
        if let Some(v) = &f.variadic {
            ctx.declare_var(v.as_str(), Value::Array(rest.to_vec()));
        }
        // The functions of the scope are declared again for nested calls
        // (the scope is only borrowed to read: nested calls borrow it too).
        declare(&mut ctx);
        f_result(slot)?
            .evaluate(&ctx)
            .map_err(|e| format!("in function {:?}: {}", name_of(slot), e.kind()))
    });
    DEPTH.with(|d| d.set(depth));
    result
}

fn f_result(slot: usize) -> Result<hcl::Expression, String> {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|scope| scope.funcs.get(slot))
            .map(|f| f.result.clone())
            .ok_or_else(|| "user functions are not available here".to_string())
    })
}

fn name_of(slot: usize) -> String {
    SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|scope| scope.funcs.get(slot))
            .map(|f| f.name.clone())
            .unwrap_or_default()
    })
}

macro_rules! trampolines {
    ($($n:literal),*) => {
        const TRAMPOLINES: [hcl::eval::Func; SLOTS] = [$({
            fn slot(args: FuncArgs) -> Result<Value, String> {
                call($n, args)
            }
            slot
        }),*];
    };
}

trampolines!(
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31
);
