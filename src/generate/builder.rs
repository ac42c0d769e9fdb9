//! A small `ModelProto` builder over the same prost types the parser reads, plus the PyTorch-style
//! layers (Conv2d, BatchNorm2d, ReLU, pools, Linear) that the search-space generators are made of.
//!
//! Weights are float32 initializers that carry their dims but no payload, like the weight-stripped
//! models archdb stores: parameter counts, shapes and MACs only need the dims. Tensor and node
//! names follow the PyTorch module paths of the reference implementations (`cells.3.layers.2.op.1`,
//! `…weight`, `…running_mean`), so a generated graph reads like an export of the original model.

use std::collections::HashSet;

use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// ONNX IR version written into generated models (ONNX 1.13+, opset ≤ 18).
pub const IR_VERSION: i64 = 8;
/// Default-domain opset of generated models: every op used here has had its current semantics
/// (BatchNormalization without `spatial`, AveragePool `count_include_pad`) since well before it.
pub const OPSET: i64 = 17;

/// Incrementally builds one ONNX graph; [`ModelBuilder::finish`] wraps it into a model.
#[derive(Debug)]
pub struct ModelBuilder {
    graph: GraphProto,
    /// Every tensor name defined so far (inputs, initializers, node outputs): names must be unique.
    names: HashSet<String>,
}

/// `Conv` hyper-parameters (square kernels, symmetric padding).
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: i64,
    /// Output channels.
    pub c_out: i64,
    /// Kernel side.
    pub kernel: i64,
    /// Stride in both spatial dims.
    pub stride: i64,
    /// Zero padding on every side.
    pub pad: i64,
    /// Convolution groups (`c_in` for depthwise).
    pub groups: i64,
    /// Dilation in both spatial dims.
    pub dilation: i64,
    /// Whether the conv has a bias input (`{name}.bias`).
    pub bias: bool,
}

impl ConvSpec {
    /// A dense, bias-free convolution with PyTorch's usual `padding = k // 2`.
    pub fn same(c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            pad: kernel / 2,
            groups: 1,
            dilation: 1,
            bias: false,
        }
    }
}

/// What [`ModelBuilder::slice`] keeps.
#[derive(Debug, Clone, Copy)]
pub enum SliceRange {
    /// Rows and columns `start, start + step, …` (axes 2 and 3).
    Spatial {
        /// First row and column kept.
        start: i64,
        /// Stride between kept rows and columns.
        step: i64,
    },
    /// Channels `0..end` (axis 1).
    Channels {
        /// One past the last channel kept.
        end: i64,
    },
}

impl ModelBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto {
                name: Some(name.to_string()),
                ..Default::default()
            },
            names: HashSet::new(),
        }
    }

    fn claim(&mut self, name: &str) -> String {
        assert!(
            self.names.insert(name.to_string()),
            "tensor name '{name}' defined twice"
        );
        name.to_string()
    }

    /// Declares a float32 graph input of a fixed shape; returns its tensor name.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> String {
        let name = self.claim(name);
        self.graph.input.push(value_info(&name, dims));
        name
    }

    /// Declares an existing tensor as a float32 graph output of a fixed shape.
    pub fn output(&mut self, name: &str, dims: &[i64]) {
        self.graph.output.push(value_info(name, dims));
    }

    /// A float32 weight with dims only (no payload); returns its name.
    pub fn weight(&mut self, name: &str, dims: &[i64]) -> String {
        let name = self.claim(name);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            ..Default::default()
        });
        name
    }

    /// A float32 initializer with contents (`data.len()` must equal the product of `dims`).
    /// Note that archdb counts every float initializer as parameters.
    pub fn initializer_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        assert_eq!(data.len() as i64, dims.iter().product::<i64>());
        let name = self.claim(name);
        self.graph.initializer.push(TensorProto {
            name: Some(name.clone()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            float_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// A `Constant` node holding a float32 tensor. Unlike an initializer it is not a parameter,
    /// which is what PyTorch exports for literals such as the `0.` of `x.mul(0.)`.
    pub fn constant_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        assert_eq!(data.len() as i64, dims.iter().product::<i64>());
        let value = TensorProto {
            name: Some(name.to_string()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            float_data: data.to_vec(),
            ..Default::default()
        };
        let attr = AttributeProto {
            name: Some("value".into()),
            r#type: Some(AttributeType::Tensor as i32),
            t: Some(Box::new(value)),
            ..Default::default()
        };
        self.node("Constant", name, &[], vec![attr])
    }

    /// A `Constant` node holding an int64 vector (`value_ints`): the starts, axes and pads
    /// inputs of `Slice` and `Pad`, which PyTorch exports as constants too.
    pub fn constant_ints(&mut self, name: &str, values: &[i64]) -> String {
        let attr = AttributeProto {
            name: Some("value_ints".into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: values.to_vec(),
            ..Default::default()
        };
        self.node("Constant", name, &[], vec![attr])
    }

    /// Appends a node with one output, named like the node; returns the output tensor name.
    /// Nodes must be added in topological order (inputs defined first).
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        debug_assert!(
            inputs
                .iter()
                .all(|i| i.is_empty() || self.names.contains(*i)),
            "node '{name}' reads an undefined tensor: {inputs:?}"
        );
        let out = self.claim(name);
        self.graph.node.push(NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attributes,
            ..Default::default()
        });
        out
    }

    /// `Conv` (PyTorch `nn.Conv2d`) with weight `{name}.weight` and optional `{name}.bias`.
    pub fn conv(&mut self, name: &str, x: &str, s: ConvSpec) -> String {
        let w = self.weight(
            &format!("{name}.weight"),
            &[s.c_out, s.c_in / s.groups, s.kernel, s.kernel],
        );
        let mut inputs = vec![x.to_string(), w];
        if s.bias {
            inputs.push(self.weight(&format!("{name}.bias"), &[s.c_out]));
        }
        let mut attrs = vec![
            attr_ints("dilations", &[s.dilation, s.dilation]),
            attr_ints("kernel_shape", &[s.kernel, s.kernel]),
            attr_ints("pads", &[s.pad, s.pad, s.pad, s.pad]),
            attr_ints("strides", &[s.stride, s.stride]),
        ];
        if s.groups != 1 {
            attrs.push(attr_int("group", s.groups));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", name, &inputs, attrs)
    }

    /// `BatchNormalization` in inference form (PyTorch `nn.BatchNorm2d(c)`, affine, tracking
    /// running statistics): scale and bias are parameters, running mean/var are buffers.
    pub fn batch_norm(&mut self, name: &str, x: &str, c: i64) -> String {
        let scale = self.weight(&format!("{name}.weight"), &[c]);
        let bias = self.weight(&format!("{name}.bias"), &[c]);
        self.batch_norm_with(name, x, c, &scale, &bias)
    }

    /// `BatchNormalization` of PyTorch `nn.BatchNorm2d(c, affine=False)`: scale 1 and bias 0 are
    /// `Constant` nodes, not parameters; the running statistics are buffers as usual.
    pub fn batch_norm_fixed(&mut self, name: &str, x: &str, c: i64) -> String {
        let len = usize::try_from(c).expect("positive channel count");
        let scale = self.constant_f32(&format!("{name}.scale"), &[c], &vec![1.0; len]);
        let bias = self.constant_f32(&format!("{name}.shift"), &[c], &vec![0.0; len]);
        self.batch_norm_with(name, x, c, &scale, &bias)
    }

    /// `BatchNormalization` with the given scale and bias and running-statistics buffers.
    fn batch_norm_with(&mut self, name: &str, x: &str, c: i64, scale: &str, bias: &str) -> String {
        let mean = self.weight(&format!("{name}.running_mean"), &[c]);
        let var = self.weight(&format!("{name}.running_var"), &[c]);
        self.node(
            "BatchNormalization",
            name,
            &[x, scale, bias, &mean, &var],
            vec![attr_float("epsilon", 1e-5), attr_float("momentum", 0.9)],
        )
    }

    /// `Relu`.
    pub fn relu(&mut self, name: &str, x: &str) -> String {
        self.node("Relu", name, &[x], vec![])
    }

    /// `Add` of two tensors of the same shape.
    pub fn add(&mut self, name: &str, a: &str, b: &str) -> String {
        self.node("Add", name, &[a, b], vec![])
    }

    /// Sum of one or more tensors as a chain of binary `Add`s (`{name}`, `{name}.1`, …), the way
    /// PyTorch exports `a + b + c`. One tensor is returned as is.
    pub fn sum(&mut self, name: &str, terms: &[String]) -> String {
        let mut acc = terms.first().expect("sum of no tensors").clone();
        for (i, t) in terms.iter().enumerate().skip(1) {
            let n = if i == 1 {
                name.to_string()
            } else {
                format!("{name}.{}", i - 1)
            };
            acc = self.add(&n, &acc, t);
        }
        acc
    }

    /// `AveragePool` with a square window (PyTorch `nn.AvgPool2d(k, stride, pad,
    /// count_include_pad)`).
    pub fn avg_pool(
        &mut self,
        name: &str,
        x: &str,
        kernel: i64,
        stride: i64,
        pad: i64,
        count_include_pad: bool,
    ) -> String {
        self.node(
            "AveragePool",
            name,
            &[x],
            vec![
                attr_int("ceil_mode", 0),
                attr_int("count_include_pad", i64::from(count_include_pad)),
                attr_ints("kernel_shape", &[kernel, kernel]),
                attr_ints("pads", &[pad, pad, pad, pad]),
                attr_ints("strides", &[stride, stride]),
            ],
        )
    }

    /// `MaxPool` with a square window (PyTorch `nn.MaxPool2d(k, stride, pad)`).
    pub fn max_pool(&mut self, name: &str, x: &str, kernel: i64, stride: i64, pad: i64) -> String {
        self.node(
            "MaxPool",
            name,
            &[x],
            vec![
                attr_int("ceil_mode", 0),
                attr_ints("kernel_shape", &[kernel, kernel]),
                attr_ints("pads", &[pad, pad, pad, pad]),
                attr_ints("strides", &[stride, stride]),
            ],
        )
    }

    /// `Concat` along channels (PyTorch `torch.cat(tensors, 1)`).
    pub fn concat(&mut self, name: &str, tensors: &[String]) -> String {
        let inputs: Vec<&str> = tensors.iter().map(String::as_str).collect();
        self.node("Concat", name, &inputs, vec![attr_int("axis", 1)])
    }

    /// `Slice` with constant starts, ends, axes and steps, as PyTorch exports indexing such as
    /// `x[:, :, 1:, 1:]` or `x[:, :c]` (see [`SliceRange`]).
    pub fn slice(&mut self, name: &str, x: &str, range: SliceRange) -> String {
        let (starts, ends, axes, steps) = match range {
            SliceRange::Spatial { start, step } => (
                vec![start, start],
                vec![i64::MAX, i64::MAX],
                vec![2, 3],
                vec![step, step],
            ),
            SliceRange::Channels { end } => (vec![0], vec![end], vec![1], vec![1]),
        };
        let s = self.constant_ints(&format!("{name}.starts"), &starts);
        let e = self.constant_ints(&format!("{name}.ends"), &ends);
        let a = self.constant_ints(&format!("{name}.axes"), &axes);
        let st = self.constant_ints(&format!("{name}.steps"), &steps);
        self.node("Slice", name, &[x, &s, &e, &a, &st], vec![])
    }

    /// `Pad` with zeros after the last row and column (PyTorch `nn.ConstantPad2d((0, 1, 0, 1), 0)`).
    pub fn pad_bottom_right(&mut self, name: &str, x: &str) -> String {
        let pads = self.constant_ints(&format!("{name}.pads"), &[0, 0, 0, 0, 0, 0, 1, 1]);
        self.node("Pad", name, &[x, &pads], vec![])
    }

    /// `ReduceMean` over the spatial axes without keeping them (PyTorch `torch.mean(x, (2, 3))`).
    pub fn spatial_mean(&mut self, name: &str, x: &str) -> String {
        self.node(
            "ReduceMean",
            name,
            &[x],
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 0)],
        )
    }

    /// `Mul(x, 0)` with the `0.` a `Constant` node (PyTorch `x.mul(0.)`, the `Zero` op of cell
    /// search spaces): a zero tensor that stays connected to the data it replaces.
    pub fn zero_of(&mut self, name: &str, x: &str) -> String {
        let zero = self.constant_f32(&format!("{name}.zero"), &[], &[0.0]);
        self.node("Mul", name, &[x, &zero], vec![])
    }

    /// `GlobalAveragePool` (PyTorch `nn.AdaptiveAvgPool2d(1)`).
    pub fn global_avg_pool(&mut self, name: &str, x: &str) -> String {
        self.node("GlobalAveragePool", name, &[x], vec![])
    }

    /// `Flatten` from axis 1 (PyTorch `x.view(x.size(0), -1)`).
    pub fn flatten(&mut self, name: &str, x: &str) -> String {
        self.node("Flatten", name, &[x], vec![attr_int("axis", 1)])
    }

    /// `Gemm` with a bias (PyTorch `nn.Linear(c_in, c_out)`, weight `[c_out, c_in]`).
    pub fn linear(&mut self, name: &str, x: &str, c_in: i64, c_out: i64) -> String {
        let w = self.weight(&format!("{name}.weight"), &[c_out, c_in]);
        let b = self.weight(&format!("{name}.bias"), &[c_out]);
        self.node(
            "Gemm",
            name,
            &[x, &w, &b],
            vec![
                attr_float("alpha", 1.0),
                attr_float("beta", 1.0),
                attr_int("transB", 1),
            ],
        )
    }

    /// The finished model: IR [`IR_VERSION`], default-domain opset [`OPSET`], producer `archdb`.
    pub fn finish(self, doc: &str) -> ModelProto {
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some("archdb".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(doc.to_string()),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// A float32 tensor `ValueInfoProto` of a fixed shape.
fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An `INT` attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}
