using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Core;

/// <summary>
/// <c>torch.autograd.grad</c> with its failures as managed exceptions. TorchSharp 0.107's native <c>THSAutograd_grad</c>
/// does not catch libtorch errors, so an output without a graph or an input the graph never reached terminates the whole
/// process (a test host, a notebook kernel) instead of throwing. This checks what libtorch would reject first and asks
/// libtorch with <c>allow_unused</c>, so the only errors left are ours, and they name the input and the grad mode.
/// </summary>
public static class Gradients
{
    /// <summary>∂(Σ outputs)/∂inputs, as <c>torch.autograd.grad</c>. An unreached input throws unless <paramref name="allowUnused"/>,
    /// which gives zeros for it (never an undefined tensor).</summary>
    /// <exception cref="InvalidOperationException">an output has no graph, or an input is not reached and unused inputs are not allowed.</exception>
    public static Tensor[] Of(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor> inputs, bool retainGraph = false,
        bool createGraph = false, bool allowUnused = false)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(inputs);
        if (outputs.Count == 0) throw new ArgumentException("no outputs to differentiate.", nameof(outputs));
        if (inputs.Count == 0) throw new ArgumentException("no inputs to differentiate with respect to.", nameof(inputs));
        for (int i = 0; i < outputs.Count; i++)
            if (!outputs[i].requires_grad)
                throw new InvalidOperationException($"output {i} has no autograd graph (grad mode on this thread: {torch.is_grad_enabled()}); "
                    + "was it computed under no_grad or from inputs that do not require grad?");
        for (int i = 0; i < inputs.Count; i++)
            if (!inputs[i].requires_grad)
                throw new InvalidOperationException($"input {i} does not require grad.");
        var grads = torch.autograd.grad(outputs.ToArray(), inputs.ToArray(), retain_graph: retainGraph, create_graph: createGraph, allow_unused: true);
        var result = new Tensor[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
        {
            if (grads[i] is { IsInvalid: false } g) { result[i] = g; continue; }
            if (!allowUnused)
                throw new InvalidOperationException($"input {i} (shape [{string.Join(", ", inputs[i].shape)}], leaf: {inputs[i].is_leaf}) "
                    + $"was not reached from the outputs (grad mode on this thread: {torch.is_grad_enabled()}).");
            result[i] = torch.zeros_like(inputs[i]);
        }
        return result;
    }
}
