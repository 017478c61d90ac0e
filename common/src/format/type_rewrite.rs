//! Rewriting a column type wherever some type sits inside it (lists, structs, maps): what the
//! text writers and the Parquet writer need changed is found at any depth.

use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Fields};

/// `data_type` with `replace` applied at every depth: `replace` sees each type first (its
/// answer stands), else lists, structs and maps are rewritten through their children. `None`
/// when nothing changed.
pub(crate) fn rewrite(
    data_type: &DataType,
    replace: &dyn Fn(&DataType) -> Option<DataType>,
) -> Option<DataType> {
    if let Some(new) = replace(data_type) {
        return Some(new);
    }
    let child = |f: &FieldRef| rewrite_field(f, replace);
    match data_type {
        DataType::List(f) => child(f).map(DataType::List),
        DataType::LargeList(f) => child(f).map(DataType::LargeList),
        DataType::FixedSizeList(f, n) => child(f).map(|f| DataType::FixedSizeList(f, *n)),
        DataType::Map(f, sorted) => child(f).map(|f| DataType::Map(f, *sorted)),
        DataType::Struct(fields) => rewrite_fields(fields, replace).map(DataType::Struct),
        _ => None,
    }
}

/// `fields` with [`rewrite`] applied to each; `None` when none changed.
pub(crate) fn rewrite_fields(
    fields: &Fields,
    replace: &dyn Fn(&DataType) -> Option<DataType>,
) -> Option<Fields> {
    let changed: Vec<Option<FieldRef>> = fields.iter().map(|f| rewrite_field(f, replace)).collect();
    changed.iter().any(Option::is_some).then(|| {
        fields
            .iter()
            .zip(changed)
            .map(|(f, c)| c.unwrap_or_else(|| f.clone()))
            .collect()
    })
}

fn rewrite_field(
    field: &FieldRef,
    replace: &dyn Fn(&DataType) -> Option<DataType>,
) -> Option<FieldRef> {
    rewrite(field.data_type(), replace).map(|t| Arc::new(field.as_ref().clone().with_data_type(t)))
}
