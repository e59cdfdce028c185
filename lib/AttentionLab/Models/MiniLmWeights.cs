using System.Runtime.InteropServices;
using Onnx;

namespace AttentionLab.Models;

/// <summary>Shape of a BERT encoder like all-MiniLM-L6-v2 (the defaults are that model's, as read from its graph).</summary>
public sealed record MiniLmConfig(
    int VocabSize = 30522, int Hidden = 384, int Layers = 6, int Heads = 12, int Intermediate = 1536,
    int MaxPositions = 512, int TypeVocabSize = 2, double LayerNormEps = 1e-12)
{
    public int HeadDim => Hidden / Heads;

    public MiniLmConfig Validate()
    {
        foreach (var (v, n) in new[] { (VocabSize, nameof(VocabSize)), (Hidden, nameof(Hidden)), (Layers, nameof(Layers)), (Heads, nameof(Heads)),
                                        (Intermediate, nameof(Intermediate)), (MaxPositions, nameof(MaxPositions)), (TypeVocabSize, nameof(TypeVocabSize)) })
            if (v <= 0) throw new ArgumentOutOfRangeException(n, v, $"{n} must be positive.");
        if (Hidden % Heads != 0) throw new ArgumentException($"Hidden {Hidden} must be a multiple of Heads {Heads}.", nameof(Heads));
        if (!(LayerNormEps > 0)) throw new ArgumentOutOfRangeException(nameof(LayerNormEps), LayerNormEps, "LayerNormEps must be positive.");
        return this;
    }
}

/// <summary>One weight as stored in PyTorch layout (Linear weights [out, in]), float32, row-major.</summary>
public sealed record MiniLmTensor(long[] Shape, float[] Data);

/// <summary>
/// The weights of all-MiniLM-L6-v2 read from its ONNX graph, under Hugging Face names, and the configuration the graph
/// implies. The graph (plain torch.onnx export, opset 13, not fused) keeps 68 initializers under their Hugging Face
/// names; the 36 Linear weights (6 per layer: query, key, value, attention output, intermediate, output) are anonymous
/// and stored [in, out] for MatMul. Each is named by following its MatMul to the Add that adds a named bias
/// ("….bias" → "….weight") and transposed to [out, in].
/// </summary>
public sealed class MiniLmWeights
{
    MiniLmWeights(MiniLmConfig config, Dictionary<string, MiniLmTensor> tensors, IReadOnlyList<(string OnnxName, string Name)> recovered)
    {
        Config = config; this.tensors = tensors; RecoveredNames = recovered;
    }

    readonly Dictionary<string, MiniLmTensor> tensors;

    public MiniLmConfig Config { get; }

    /// <summary>Hugging Face names of every weight (e.g. "encoder.layer.0.attention.self.query.weight").</summary>
    public IReadOnlyCollection<string> Names => tensors.Keys;

    /// <summary>The anonymous initializers named by following MatMul → Add(bias), in graph order.</summary>
    public IReadOnlyList<(string OnnxName, string Name)> RecoveredNames { get; }

    public MiniLmTensor this[string name] => tensors.TryGetValue(name, out var t) ? t
        : throw new KeyNotFoundException($"all-MiniLM-L6-v2 has no weight '{name}'.");

    /// <summary>Parses ONNX bytes (OnnxSharp) into named weights and the implied configuration.</summary>
    public static MiniLmWeights FromOnnx(byte[] onnx)
    {
        ArgumentNullException.ThrowIfNull(onnx);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data is little-endian; this machine is not.");
        var graph = ModelProto.Parser.ParseFrom(onnx).Graph
            ?? throw new InvalidDataException("the ONNX model has no graph.");
        var init = graph.Initializer.ToDictionary(t => t.Name);
        var producer = new Dictionary<string, NodeProto>();
        var consumers = new Dictionary<string, List<NodeProto>>();
        foreach (var node in graph.Node)
        {
            foreach (var o in node.Output) producer[o] = node;
            foreach (var i in node.Input)
            {
                if (!consumers.TryGetValue(i, out var list)) consumers[i] = list = new List<NodeProto>();
                list.Add(node);
            }
        }

        var tensors = new Dictionary<string, MiniLmTensor>();
        foreach (var t in graph.Initializer)
            if (t.Name.EndsWith(".weight") || t.Name.EndsWith(".bias"))
                tensors[t.Name] = new MiniLmTensor(t.Dims.ToArray(), Floats(t));

        // The 36 anonymous Linear weights: MatMul(x, W[in,out]) → Add(bias, ·) with a named bias.
        var recovered = new List<(string, string)>();
        foreach (var matmul in graph.Node.Where(n => n.OpType == "MatMul"))
        {
            if (matmul.Input.Count != 2 || !init.TryGetValue(matmul.Input[1], out var w)) continue;   // activation × activation
            var add = consumers.GetValueOrDefault(matmul.Output[0])?.SingleOrDefault(n => n.OpType == "Add")
                ?? throw new InvalidDataException($"MatMul {matmul.Name} (weight {w.Name}) is not followed by an Add.");
            string biasName = add.Input.Single(i => i != matmul.Output[0]);
            if (!biasName.EndsWith(".bias") || !tensors.TryGetValue(biasName, out var bias))
                throw new InvalidDataException($"MatMul {matmul.Name} (weight {w.Name}) adds '{biasName}', not a named bias.");
            string name = biasName[..^".bias".Length] + ".weight";
            long inF = w.Dims[0], outF = w.Dims[1];
            if (w.Dims.Count != 2 || bias.Shape.Length != 1 || bias.Shape[0] != outF)
                throw new InvalidDataException($"{w.Name} [{string.Join(",", w.Dims)}] does not fit its bias {biasName} [{string.Join(",", bias.Shape)}].");
            tensors[name] = new MiniLmTensor(new[] { outF, inF }, Transpose(Floats(w), (int)inF, (int)outF));
            recovered.Add((w.Name, name));
        }

        // The pooler is a Gemm with a named weight; transB = 1 means it is already [out, in].
        var gemm = graph.Node.SingleOrDefault(n => n.OpType == "Gemm");
        if (gemm is not null && gemm.Input[1] == "pooler.dense.weight" && !(gemm.Attribute.FirstOrDefault(a => a.Name == "transB")?.I == 1))
        {
            var p = tensors["pooler.dense.weight"];
            tensors["pooler.dense.weight"] = new MiniLmTensor(new[] { p.Shape[1], p.Shape[0] }, Transpose(p.Data, (int)p.Shape[0], (int)p.Shape[1]));
        }

        var config = InferConfig(graph, tensors, init, producer, consumers);
        CheckComplete(config, tensors);
        return new MiniLmWeights(config, tensors, recovered);
    }

    /// <summary>Every Hugging Face weight name a BERT encoder of <paramref name="config"/> needs.</summary>
    public static IEnumerable<string> ExpectedNames(MiniLmConfig config)
    {
        yield return "embeddings.word_embeddings.weight";
        yield return "embeddings.position_embeddings.weight";
        yield return "embeddings.token_type_embeddings.weight";
        yield return "embeddings.LayerNorm.weight";
        yield return "embeddings.LayerNorm.bias";
        for (int l = 0; l < config.Layers; l++)
            foreach (var m in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                                      "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm" })
            {
                yield return $"encoder.layer.{l}.{m}.weight";
                yield return $"encoder.layer.{l}.{m}.bias";
            }
        yield return "pooler.dense.weight";
        yield return "pooler.dense.bias";
    }

    static void CheckComplete(MiniLmConfig c, Dictionary<string, MiniLmTensor> tensors)
    {
        var missing = ExpectedNames(c).Where(n => !tensors.ContainsKey(n)).ToList();
        if (missing.Count > 0) throw new InvalidDataException($"the ONNX graph lacks {missing.Count} weights, e.g. {string.Join(", ", missing.Take(4))}.");
        void Expect(string name, params long[] shape)
        {
            if (!tensors[name].Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{name} has shape [{string.Join(",", tensors[name].Shape)}], expected [{string.Join(",", shape)}].");
        }
        Expect("embeddings.word_embeddings.weight", c.VocabSize, c.Hidden);
        Expect("embeddings.position_embeddings.weight", c.MaxPositions, c.Hidden);
        Expect("embeddings.token_type_embeddings.weight", c.TypeVocabSize, c.Hidden);
        Expect("pooler.dense.weight", c.Hidden, c.Hidden);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (var m in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense" })
                Expect(p + m + ".weight", c.Hidden, c.Hidden);
            Expect(p + "intermediate.dense.weight", c.Intermediate, c.Hidden);
            Expect(p + "output.dense.weight", c.Hidden, c.Intermediate);
        }
    }

    static MiniLmConfig InferConfig(GraphProto graph, Dictionary<string, MiniLmTensor> tensors, Dictionary<string, TensorProto> init,
                                    Dictionary<string, NodeProto> producer, Dictionary<string, List<NodeProto>> consumers)
    {
        var word = tensors.GetValueOrDefault("embeddings.word_embeddings.weight")
            ?? throw new InvalidDataException("the ONNX graph has no embeddings.word_embeddings.weight: not a BERT export.");
        int layers = 0;
        while (tensors.ContainsKey($"encoder.layer.{layers}.attention.self.query.bias")) layers++;
        if (layers == 0) throw new InvalidDataException("the ONNX graph has no encoder.layer.0: not a BERT export.");

        // Heads: the query projection is reshaped to Concat(batch, seq, heads, headDim) with two int64 initializers.
        var queryAdd = graph.Node.First(n => n.OpType == "Add" && n.Input.Contains("encoder.layer.0.attention.self.query.bias"));
        var reshape = consumers[queryAdd.Output[0]].First(n => n.OpType == "Reshape");
        var concat = producer[reshape.Input[1]];
        var ints = concat.Input.Where(init.ContainsKey).Select(n => Int64s(init[n]).Single()).ToList();
        if (concat.OpType != "Concat" || ints.Count != 2)
            throw new InvalidDataException("cannot read the head count from the first attention's Reshape.");
        int heads = (int)ints[0], headDim = (int)ints[1];
        if (heads * headDim != word.Shape[1]) throw new InvalidDataException($"heads {heads} × head dim {headDim} ≠ hidden {word.Shape[1]}.");

        // LayerNorm is written out: Sqrt(Add(ReduceMean(Pow(x − mean, 2)), eps)). Every eps must agree.
        var eps = new List<float>();
        foreach (var sqrt in graph.Node.Where(n => n.OpType == "Sqrt"))
        {
            var add = producer[sqrt.Input[0]];
            var constant = add.Input.Select(i => producer.GetValueOrDefault(i)).FirstOrDefault(n => n?.OpType == "Constant");
            if (add.OpType != "Add" || constant is null) throw new InvalidDataException($"Sqrt {sqrt.Name} is not LayerNorm's Sqrt(var + eps).");
            eps.Add(Floats(constant.Attribute.Single(a => a.Name == "value").T).Single());
        }
        if (eps.Count != 2 * layers + 1 || eps.Distinct().Count() != 1)
            throw new InvalidDataException(
                $"expected {2 * layers + 1} LayerNorms with one eps, found {eps.Count} with eps {string.Join(", ", eps.Distinct())}.");

        int erf = graph.Node.Count(n => n.OpType == "Erf"), softmax = graph.Node.Count(n => n.OpType == "Softmax");
        if (erf != layers || softmax != layers)
            throw new InvalidDataException($"expected one Erf-GELU and one Softmax per layer ({layers}), found {erf} Erf, {softmax} Softmax.");

        return new MiniLmConfig(
            VocabSize: (int)word.Shape[0], Hidden: (int)word.Shape[1], Layers: layers, Heads: heads,
            Intermediate: (int)tensors["encoder.layer.0.intermediate.dense.bias"].Shape[0],
            MaxPositions: (int)tensors["embeddings.position_embeddings.weight"].Shape[0],
            TypeVocabSize: (int)tensors["embeddings.token_type_embeddings.weight"].Shape[0],
            LayerNormEps: eps[0]).Validate();
    }

    static float[] Floats(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Float)
            throw new InvalidDataException($"initializer {t.Name} has ONNX data type {t.DataType}, expected float (1).");
        return t.RawData.Length > 0 ? MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray() : t.FloatData.ToArray();
    }

    static long[] Int64s(TensorProto t)
    {
        if (t.DataType != (int)TensorProto.Types.DataType.Int64)
            throw new InvalidDataException($"initializer {t.Name} has ONNX data type {t.DataType}, expected int64 (7).");
        return t.RawData.Length > 0 ? MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray() : t.Int64Data.ToArray();
    }

    /// <summary>[rows, cols] row-major → [cols, rows] row-major.</summary>
    static float[] Transpose(float[] a, int rows, int cols)
    {
        var t = new float[a.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = a[r * cols + c];
        return t;
    }
}
