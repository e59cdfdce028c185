using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>The shared sliding-window mixer (moved from Papers/Based in issue 12): the window, its mask, decoding and bad inputs.</summary>
public class SlidingWindowAttentionTests
{
    [Fact]
    public void AttendIsSoftmaxInsideTheWindow()
    {
        torch.manual_seed(7);
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 9, 2, 4, dtype: float64); var k = torch.randn(1, 9, 2, 4, dtype: float64); var v = torch.randn(1, 9, 2, 3, dtype: float64);
        using var full = ReferenceAttention.Softmax(q, k, v, causal: true);
        AssertClose.Tensors(SlidingWindowAttention.Attend(q, k, v, windowKeys: 9), full.Output, atol: 1e-12, rtol: 1e-12, what: "w = T");
        var w3 = SlidingWindowAttention.Attend(q, k, v, windowKeys: 3);
        for (int t = 0; t < 9; t++)                                                  // each row: softmax over its own last 3 keys
        {
            int from = Math.Max(0, t - 2);
            using var r = ReferenceAttention.Softmax(q.narrow(1, t, 1), k.narrow(1, from, t - from + 1), v.narrow(1, from, t - from + 1));
            AssertClose.Tensors(w3.narrow(1, t, 1), r.Output, atol: 1e-12, rtol: 1e-12, what: $"row {t}");
        }
    }

    /// <summary>
    /// The mixer masks by position (<see cref="SlidingWindowAttention.Visible"/>); on the end-aligned grid of a forward pass and
    /// of a decode row that mask is exactly <see cref="AttentionMasks.SlidingWindow"/>; off the grid it still follows the positions.
    /// </summary>
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 3)]
    [InlineData(7, 1)]
    [InlineData(20, 7)]
    [InlineData(5, 30)]
    public void TheWindowByPositionIsTheSharedMaskOnTheGrid(int t, int window)
    {
        using var scope = NewDisposeScope();
        var pos = torch.arange(t);
        Assert.True(Same(SlidingWindowAttention.Visible(pos, pos, window), AttentionMasks.SlidingWindow(t, t, window)), $"T = {t}, n = {window}");
        var row = SlidingWindowAttention.Visible(torch.tensor(new long[] { t - 1 }), pos, window);
        Assert.True(Same(row, AttentionMasks.SlidingWindow(1, t, window)), $"decode row, T = {t}, n = {window}");
        var shifted = SlidingWindowAttention.Visible(pos + 100, pos + 100, window);   // positions, not indices, decide
        Assert.True(Same(shifted, AttentionMasks.SlidingWindow(t, t, window)), "shifted positions");
    }

    /// <summary>Forward vs Step over awkward lengths (T = 1, window 1, window ≥ T); the state never holds more than the window.</summary>
    [Theory]
    [InlineData(1, 3)]
    [InlineData(11, 1)]
    [InlineData(13, 4)]
    [InlineData(6, 9)]
    public void StepReproducesTheForwardAndTheStateIsTheWindow(int t, int window)
    {
        torch.manual_seed(t * 31 + window);
        using var scope = NewDisposeScope();
        using var _ = torch.no_grad();
        using var mixer = new SlidingWindowAttention(12, 3, window);
        var x = torch.randn(2, t, 12);
        var full = mixer.call(x);
        using var state = mixer.NewState(2, float32, CPU);
        var steps = Enumerable.Range(0, t).Select(i => mixer.Step(x.select(1, i), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: $"Step vs forward, T = {t}, n = {window}");
        Assert.Equal(2L * 2 * Math.Min(t, window) * 12 * 4, state.Bytes);
        Assert.Equal(2L * 2 * window * 12 * 4, mixer.StateBytes(2));
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        Assert.Equal("windowKeys", Assert.Throws<ArgumentOutOfRangeException>(() => new SlidingWindowAttention(8, 2, windowKeys: 0)).ParamName);
        Assert.Equal("windowKeys", Assert.Throws<ArgumentOutOfRangeException>(() => SlidingWindowAttention.Attend(
            torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), 0)).ParamName);
        using var swa = new SlidingWindowAttention(8, 2, 4);
        using var state = swa.NewState(1, float32, CPU);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => swa.Step(torch.randn(1, 7), state)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => SlidingWindowAttention.Attend(torch.zeros(2, 1, 2), torch.zeros(1, 2, 1, 2),
            torch.zeros(1, 2, 1, 2), 2)).ParamName);
    }
}
